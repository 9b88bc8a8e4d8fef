/// Text for XML and HTML documents (the SVG plots, the compliance report).
public enum XMLText {
    /// `s` with `&`, `<`, `>`, `"` and `'` escaped, safe in element content and quoted attributes.
    public static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
