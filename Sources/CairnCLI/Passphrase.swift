import ArgumentParser
import CairnCrypto
import CairnWire
import Glibc

/// How a command gets a keystore passphrase: from a file (or standard input), else from the
/// terminal with echo off. Never from a command-line argument or an environment variable, which
/// other users of the machine can read.
struct PassphraseOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Read the keystore passphrase from this file ('-' reads standard input); one trailing newline is ignored. Without this option the passphrase is asked for on the terminal.",
            valueName: "path"
        )
    )
    var passphraseFile: String?

    /// The shortest passphrase accepted for a new keystore.
    static let minimumNewLength = 8
    static let maximumLength = 4096

    /// Reads the passphrase; `confirm` asks twice on a terminal (for a new keystore).
    func read(newKeystore: Bool) throws -> SecretBytes {
        var raw: [UInt8]
        if let path = passphraseFile {
            raw = path == "-" ? try readStandardInput() : try DurableFile.read(path, maximum: Self.maximumLength)
            if raw.last == 0x0a { raw.removeLast() }
            if raw.last == 0x0d { raw.removeLast() }
        } else {
            guard isatty(STDIN_FILENO) == 1 else {
                throw CLIError("no passphrase: give --passphrase-file, or run on a terminal to be asked for one")
            }
            raw = try prompt(newKeystore ? "New keystore passphrase: " : "Keystore passphrase: ")
            if newKeystore {
                var again = try prompt("Repeat the passphrase: ")
                defer { wipe(&again) }
                guard ConstantTime.equals(raw, again) else {
                    wipe(&raw)
                    throw CLIError("the two passphrases differ; nothing was written")
                }
            }
        }
        defer { wipe(&raw) }
        guard !raw.isEmpty else { throw CLIError("the passphrase is empty") }
        if newKeystore && raw.count < Self.minimumNewLength {
            throw CLIError("a new keystore passphrase needs at least \(Self.minimumNewLength) characters")
        }
        return SecretBytes(copying: raw)
    }

    private func readStandardInput() throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        defer { wipe(&buffer) }
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(STDIN_FILENO, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw CLIError("cannot read the passphrase from standard input") }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
            guard out.count <= Self.maximumLength else {
                wipe(&out)
                throw CLIError("the passphrase is longer than \(Self.maximumLength) bytes")
            }
        }
        return out
    }

    /// Prompts on standard error and reads one line from the terminal with echo turned off.
    private func prompt(_ text: String) throws -> [UInt8] {
        writeToStandardError(text)
        var saved = termios()
        let haveTerminal = tcgetattr(STDIN_FILENO, &saved) == 0
        if haveTerminal {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        }
        defer {
            if haveTerminal { _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved) }
            writeToStandardError("\n")
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while Glibc.read(STDIN_FILENO, &byte, 1) == 1, byte != 0x0a {
            line.append(byte)
            guard line.count <= Self.maximumLength else {
                wipe(&line)
                throw CLIError("the passphrase is longer than \(Self.maximumLength) bytes")
            }
        }
        return line
    }
}

/// Overwrites an array's bytes before it is dropped (it was never copied, so this is its only storage).
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buffer in
        for i in buffer.indices { buffer[i] = 0 }
    }
    bytes.removeAll()
}

/// Writes text to standard error (prompts, so standard output stays clean for scripts).
func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { Glibc.write(STDERR_FILENO, $0.baseAddress!, $0.count) }
}
