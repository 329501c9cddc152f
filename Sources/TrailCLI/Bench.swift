import ArgumentParser
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark ingestion against raw SQLite (see README).")
    func run() throws {}
}
