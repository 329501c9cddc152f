import Foundation
import TrailCore
import TrailFormats
import X509

/// The certificates that `--crl` files revoke, by issuer and serial.
struct RevocationList: Sendable {
    private var serials: [DistinguishedName: Set<String>] = [:]

    init(_ crls: [CertificateRevocationList] = []) {
        for crl in crls { serials[crl.issuerName, default: []].formUnion(crl.entries.map(\.serial)) }
    }

    /// True when a CRL of `issuer` lists `serial` (normalised, ``CertificateSerial``).
    func revokes(issuer: DistinguishedName, serial: String) -> Bool {
        serials[issuer]?.contains(serial) ?? false
    }
}

/// Reads one `--crl` file: every CRL in it, each signed by a certificate of the `--client-ca` bundle.
enum CRLFile {
    static func load(_ path: String, signers: [Certificate]) throws(ServerConfigurationError) -> [CertificateRevocationList] {
        let bytes: [UInt8]
        do {
            bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ServerConfigurationError("--crl \(path): cannot read the file (\((error as NSError).localizedDescription))")
        }
        let crls: [CertificateRevocationList]
        do {
            crls = try CertificateRevocationList.decodeAll(bytes)
        } catch {
            throw ServerConfigurationError("--crl \(path): not a CRL (\(error.reason)); give a PEM (X509 CRL) or DER CRL")
        }
        for crl in crls where !signers.contains(where: crl.isSigned(by:)) {
            throw ServerConfigurationError(
                "--crl \(path): the CRL of \(crl.issuer) is not signed by a CA certificate of --client-ca; give the CA's own CRL, and its certificate in --client-ca")
        }
        return crls
    }
}

/// A file's identity and version: a write, an atomic replacement or a truncation changes it.
struct FileStamp: Equatable {
    var inode: UInt64
    var size: UInt64
    var modified: Date

    /// The file's stamp now; nil if it cannot be looked at.
    init?(_ path: String) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let size = (attributes[.size] as? NSNumber)?.uint64Value,
            let modified = attributes[.modificationDate] as? Date
        else { return nil }
        self.inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
        self.size = size
        self.modified = modified
    }
}

/// The `--crl` files as they are now. Each is re-read when its stamp changes: looked at on every new connection
/// and, for requests on kept-alive connections, at most every `interval`. A file that changed and cannot be read
/// or verified keeps its last good CRLs, and the problem is logged once per change.
final class RevocationWatcher: Sendable {
    private struct Watched {
        var path: String
        var stamp: FileStamp?
        var crls: [CertificateRevocationList]
    }

    private struct State {
        var files: [Watched]
        var list: RevocationList
        var lastLook: ContinuousClock.Instant
    }

    private let signers: [Certificate]
    private let interval: Duration
    private let log: @Sendable (String) -> Void
    private let state: Locked<State>

    /// Reads every file; the first that cannot be read or verified is an error naming it and the reason.
    init(
        paths: [String], signers: [Certificate], interval: Duration, log: @escaping @Sendable (String) -> Void
    ) throws(ServerConfigurationError) {
        var files: [Watched] = []
        for path in paths {
            let stamp = FileStamp(path)
            files.append(Watched(path: path, stamp: stamp, crls: try CRLFile.load(path, signers: signers)))
        }
        self.signers = signers
        self.interval = interval
        self.log = log
        state = Locked(State(files: files, list: RevocationList(files.flatMap(\.crls)), lastLook: .now))
    }

    /// True when the CRLs in force revoke the certificate; `lookNow` re-reads changed files whatever the interval.
    func revokes(issuer: DistinguishedName, serial: String, lookNow: Bool = false) -> Bool {
        state.withLock { state in
            let now = ContinuousClock.now
            if lookNow || now - state.lastLook >= interval {
                state.lastLook = now
                reloadChanged(&state)
            }
            return state.list.revokes(issuer: issuer, serial: serial)
        }
    }

    private func reloadChanged(_ state: inout State) {
        var changed = false
        for i in state.files.indices {
            let stamp = FileStamp(state.files[i].path)
            guard stamp != state.files[i].stamp else { continue }
            state.files[i].stamp = stamp
            do {
                state.files[i].crls = try CRLFile.load(state.files[i].path, signers: signers)
                changed = true
                let count = state.files[i].crls.reduce(0) { $0 + $1.entries.count }
                log("trail serve: \(state.files[i].path) reloaded: \(count) revoked certificate(s)")
            } catch {
                log("trail serve: \(error.description); keeping its last good CRL")
            }
        }
        if changed { state.list = RevocationList(state.files.flatMap(\.crls)) }
    }
}
