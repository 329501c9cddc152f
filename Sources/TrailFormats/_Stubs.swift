import TrailCore
struct OTLPProtobufParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
struct OTLPJSONParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
struct KongLogParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
struct EnvoyJSONLogParser { func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
struct EnvoyTextLogParser { init(format: String = "") {}; func parse(_ i: [UInt8]) -> [ParseResult] { [] } }
