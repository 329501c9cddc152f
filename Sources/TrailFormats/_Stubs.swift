import TrailCore
struct KongLogParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
struct EnvoyJSONLogParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
struct EnvoyTextLogParser { init(format: String = "") {}; func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
