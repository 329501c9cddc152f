import Foundation
import TrailCore

/// An append-only file of lines (access logs, span exports), shared by the threads that record requests. Each
/// line goes out in one `write` on an `O_APPEND` descriptor, so lines from several threads never interleave.
package final class LineFile: Sendable {
    private let fd: Locked<Int32>

    /// Opens (creating, mode 0640) `path` for appending; `setting` names the configuration key in errors.
    package init(path: String, setting: String) throws {
        let opened = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard opened >= 0 else { throw MeshError("\(setting): cannot open \(path): \(String(cString: strerror(errno)))") }
        fd = Locked(opened)
    }

    /// Appends `line` and a newline.
    package func append(_ line: String) {
        var text = line
        text += "\n"
        fd.withLock { fd in
            guard fd >= 0 else { return }
            _ = text.withUTF8 { write(fd, $0.baseAddress, $0.count) }
        }
    }

    package func close() {
        fd.withLock { fd in
            if fd >= 0 { _ = Foundation.close(fd) }
            fd = -1
        }
    }
}
