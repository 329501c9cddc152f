import Foundation

/// A supervised child process: started with `posix_spawn` in a process group of its own (so a Ctrl-C at the
/// terminal reaches only the supervisor, which stops the estate in order) and with the default disposition and an
/// empty mask for SIGINT and SIGTERM whatever its parent ignored or blocked. Its stderr goes to a log file; the
/// first lines of its stdout are read as its ready lines (`listening on URL`, `ready PORT`), the rest is appended
/// to the log.
public final class ChildProcess: @unchecked Sendable {
    public let name: String
    public let pid: pid_t
    public let logPath: String
    /// The ready lines read at start.
    public private(set) var lines: [String] = []
    private let stdinFD: Int32
    private let stdoutFD: Int32
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Starts `executable` with `arguments` and waits up to `timeout` seconds for `readyLines` lines on its stdout.
    public init(
        name: String, executable: String, arguments: [String], logPath: String, readyLines: Int = 1, timeout: Double = 30
    ) throws {
        self.name = name
        self.logPath = logPath
        var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0 else { throw DemoError("cannot create pipes for \(name): \(String(cString: strerror(errno)))") }
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw DemoError("cannot open \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(logFD) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        for fd in [inPipe[0], inPipe[1], outPipe[0], outPipe[1]] { posix_spawn_file_actions_addclose(&actions, fd) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for sig in [SIGINT, SIGTERM, SIGPIPE, SIGHUP] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        close(inPipe[0])
        close(outPipe[1])
        guard rc == 0 else {
            close(inPipe[1])
            close(outPipe[0])
            throw DemoError("cannot start \(name) (\(executable)): \(String(cString: strerror(rc)))")
        }
        pid = child
        stdinFD = inPipe[1]
        stdoutFD = outPipe[0]
        _ = fcntl(stdinFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(stdoutFD, F_SETFD, FD_CLOEXEC)
        lines = try readLines(readyLines, timeout: timeout)
        drainStdoutToLog()
    }

    deinit {
        close(stdinFD)
    }

    /// The URL of a `listening on URL` line (the last word of ready line `index`).
    public func url(_ index: Int = 0) -> String { String(lines[index].split(separator: " ").last ?? "") }

    /// Writes one line to the child's stdin.
    public func send(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(stdinFD, $0.baseAddress, $0.count) }
    }

    public var isRunning: Bool { reap(block: false) == nil }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns the exit status.
    @discardableResult
    public func stop(grace: Double = 10) -> Int32 {
        if let status = reap(block: false) { return status }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline {
            if let status = reap(block: false) { return status }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        return reap(block: true) ?? -1
    }

    private func reap(block: Bool) -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let exitStatus { return exitStatus }
        var status: Int32 = 0
        let r = waitpid(pid, &status, block ? 0 : WNOHANG)
        guard r == pid else { return nil }
        exitStatus = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return exitStatus
    }

    private func readLines(_ count: Int, timeout: Double) throws -> [String] {
        var lines: [String] = []
        var current: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        var byte: UInt8 = 0
        while lines.count < count {
            var poller = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
            guard remaining > 0, poll(&poller, 1, remaining) > 0, read(stdoutFD, &byte, 1) == 1 else {
                _ = stop(grace: 2)
                let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                let tail = log.split(separator: "\n").suffix(5).joined(separator: "\n  ")
                throw DemoError("\(name) did not start\(tail.isEmpty ? "" : ":\n  \(tail)") (log: \(logPath))")
            }
            if byte == 0x0A {
                lines.append(String(decoding: current, as: UTF8.self))
                current = []
            } else {
                current.append(byte)
            }
        }
        return lines
    }

    /// Copies whatever else the child prints to its log, so a full pipe never blocks it.
    private func drainStdoutToLog() {
        let fd = stdoutFD, path = logPath
        Thread.detachNewThread {
            let log = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
                if n <= 0 { break }
                if log >= 0 { _ = buffer.withUnsafeBytes { write(log, $0.baseAddress, n) } }
            }
            if log >= 0 { close(log) }
            close(fd)
        }
    }
}

/// What went wrong in the demo, in one line.
public struct DemoError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
