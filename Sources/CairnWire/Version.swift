/// Versions that Cairn's tools report and that its encodings carry.
public enum CairnVersion {
    /// The software release, printed by every tool's `--version`.
    public static let software = "0.1.0"
    /// The wire-format version (see `Protocol/README.md`), carried by versioned encodings.
    public static let wire: UInt16 = 1
}
