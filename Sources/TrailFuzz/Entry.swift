import CTrailFuzz
import Foundation

/// The target named by `TRAIL_FUZZ_TARGET`, looked up once.
private let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["TRAIL_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTargets.named(name) else {
        let names = FuzzTargets.all.map(\.name).joined(separator: ", ")
        FileHandle.standardError.write(Data("TRAIL_FUZZ_TARGET='\(name)' is not a target; one of: \(names)\n".utf8))
        exit(2)
    }
    return target
}()

/// libFuzzer's per-input callback: runs the selected target on one input.
@_cdecl("LLVMFuzzerTestOneInput")
public func trailFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    selectedTarget.run(bytes)
    return 0
}

@main
struct TrailFuzzMain {
    static func main() {
        #if TRAIL_LIBFUZZER
        // Built with `-sanitize=fuzzer` and `-D TRAIL_LIBFUZZER` (.ci/fuzz). SwiftPM links an executable's main to
        // this module's entry point, so libFuzzer's own main is not used: hand libFuzzer the command line here.
        _ = selectedTarget
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in trailFuzzTestOneInput(data, size) })
        #else
        replay(Array(CommandLine.arguments.dropFirst()))
        #endif
    }

    /// A normal build: replays inputs (files, or every file of a folder) through the target, e.g. a saved crash.
    static func replay(_ arguments: [String]) {
        if arguments.isEmpty || arguments.contains("--help") || arguments.contains("--list") {
            print("usage: TRAIL_FUZZ_TARGET=NAME TrailFuzz FILE|DIR...   (replays inputs; .ci/fuzz builds it for fuzzing)")
            for t in FuzzTargets.all { print("  \(t.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(t.summary)") }
            exit(arguments.isEmpty ? 2 : 0)
        }
        let target = selectedTarget
        var files: [String] = []
        for a in arguments {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: a, isDirectory: &isDirectory), isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: a)) ?? []
                files += names.sorted().map { (a as NSString).appendingPathComponent($0) }
            } else {
                files.append(a)
            }
        }
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else {
                FileHandle.standardError.write(Data("cannot read \(f)\n".utf8))
                exit(1)
            }
            let start = Date()
            target.run([UInt8](data))
            print(String(format: "%@: %@ ok (%.3f s)", target.name, f, Date().timeIntervalSince(start)))
        }
    }
}
