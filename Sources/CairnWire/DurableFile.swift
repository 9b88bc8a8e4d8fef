import Glibc

/// Whole-file reads and crash-safe writes for Cairn's on-disk formats (keystores, configs, exports).
///
/// A write goes to a temporary file in the same folder, is flushed with `fsync`, then moved into
/// place and the folder is flushed too: after a crash the path holds either the old file or the
/// complete new one, never a torn one.
public enum DurableFile {
    /// Reads a whole file, refusing one larger than `maximum` bytes.
    public static func read(_ path: String, maximum: Int) throws(WireError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ioError("cannot open \(path)") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ioError("cannot stat \(path)") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw WireError(.io, "\(path) is not a regular file") }
        guard Int(info.st_size) <= maximum else {
            throw WireError(.tooLarge, "\(path) is \(info.st_size) bytes; at most \(maximum) are accepted")
        }
        var out = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        while done < out.count {
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ioError("cannot read \(path)") }
            done += n
        }
        return out
    }

    /// The mode of a file meant for others (an export, a model, a report): `0o666` less the
    /// user's umask, as any other program's output.
    public static let shared: UInt32 = 0o666

    /// Writes `bytes` to `path` atomically and durably with permissions `mode`: exactly `mode`
    /// when it is private (no group or other bits, such as the default `0o600`), whatever the
    /// umask; otherwise `mode` less the umask (``shared``).
    ///
    /// - Parameter replace: when `false`, an existing file at `path` is left untouched and the
    ///   call throws, so a key file can never be overwritten by accident.
    public static func write(
        _ bytes: [UInt8],
        to path: String,
        mode: UInt32 = 0o600,
        replace: Bool
    ) throws(WireError) {
        let directory = parentDirectory(of: path)
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(mode))
        guard fd >= 0 else { throw ioError("cannot create \(temporary)") }
        var keepTemporary = false
        defer { if !keepTemporary { unlink(temporary) } }
        do {
            defer { close(fd) }
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw ioError("cannot write \(temporary)") }
                done += n
            }
            if mode & 0o077 == 0 {
                guard fchmod(fd, mode_t(mode)) == 0 else { throw ioError("cannot set permissions on \(temporary)") }
            }
            guard fsync(fd) == 0 else { throw ioError("cannot flush \(temporary)") }
        }
        if replace {
            guard rename(temporary, path) == 0 else { throw ioError("cannot move the new file to \(path)") }
            keepTemporary = true  // it has become `path`
        } else {
            // link(2) refuses an existing target, so the check and the creation are one step.
            guard link(temporary, path) == 0 else {
                if errno == EEXIST { throw WireError(.io, "\(path) already exists; refusing to overwrite it") }
                throw ioError("cannot create \(path)")
            }
        }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirfd >= 0 else { throw ioError("cannot open folder \(directory)") }
        defer { close(dirfd) }
        guard fsync(dirfd) == 0 else { throw ioError("cannot flush folder \(directory)") }
    }

    /// Whether a file or folder exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0
    }

    /// The names in a folder, sorted, without `.` and `..`.
    public static func entries(in folder: String) throws(WireError) -> [String] {
        guard let dir = opendir(folder) else { throw ioError("cannot list folder \(folder)") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Whether `path` is a folder.
    public static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates a folder (and its parents) with permissions `mode` if it does not exist: exactly
    /// `mode` when it is private (the default `0o700`), whatever the umask; otherwise `mode` less
    /// the umask.
    public static func makeDirectory(_ path: String, mode: UInt32 = 0o700) throws(WireError) {
        if exists(path) { return }
        let parent = parentDirectory(of: path)
        if parent != path && parent != "." && parent != "/" { try makeDirectory(parent, mode: mode) }
        guard mkdir(path, mode_t(mode)) == 0 || errno == EEXIST else { throw ioError("cannot create folder \(path)") }
        if mode & 0o077 == 0 {
            guard chmod(path, mode_t(mode)) == 0 else { throw ioError("cannot set permissions on \(path)") }
        }
    }

    /// Makes `path` an owner-only file (`0o600`), creating it empty if it does not exist: a
    /// database opened on it afterwards, and the journal files SQLite creates beside it with the
    /// same mode, are the owner's alone whatever the umask.
    ///
    /// An existing file is changed by path, never opened: closing a descriptor of a database
    /// file would drop the POSIX locks that SQLite connections of this process hold on it.
    public static func makePrivate(_ path: String) throws(WireError) {
        let fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(0o600))
        if fd >= 0 {
            defer { close(fd) }
            guard fchmod(fd, mode_t(0o600)) == 0 else { throw ioError("cannot set permissions on \(path)") }
        } else {
            guard errno == EEXIST else { throw ioError("cannot create \(path)") }
            guard chmod(path, mode_t(0o600)) == 0 else { throw ioError("cannot set permissions on \(path)") }
        }
        for suffix in ["-wal", "-shm"] where exists(path + suffix) {
            guard chmod(path + suffix, mode_t(0o600)) == 0 else {
                throw ioError("cannot set permissions on \(path)\(suffix)")
            }
        }
    }

    private static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let parent = String(path[..<slash])
        return parent.isEmpty ? "/" : parent
    }

    private static func ioError(_ what: String, file: StaticString = #fileID, line: UInt = #line) -> WireError {
        let reason = String(cString: strerror(errno))
        return WireError(.io, "\(what): \(reason)", file: file, line: line)
    }
}
