import CZlib
import CZstd

/// An error from compressing or decompressing, with what to do about it.
public struct CompressionError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// The compressions Trail recognises on input, by their magic bytes.
public enum CompressionKind: String, Sendable {
    case none
    case gzip
    case zstd

    /// Detects gzip (1f 8b) and zstd (28 b5 2f fd) frames.
    public static func detect(_ bytes: some Collection<UInt8>) -> CompressionKind {
        var it = bytes.makeIterator()
        let b0 = it.next(), b1 = it.next(), b2 = it.next(), b3 = it.next()
        if b0 == 0x1F, b1 == 0x8B { return .gzip }
        if b0 == 0x28, b1 == 0xB5, b2 == 0x2F, b3 == 0xFD { return .zstd }
        return .none
    }
}

/// zstd compression through the system libzstd.
public enum Zstd {
    /// Compresses with the given level (1 is fast and already compresses logs about 6x).
    public static func compress(_ input: [UInt8], level: Int32 = 3) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                ZSTD_compress(dst.baseAddress, bound, src.baseAddress, input.count, level)
            }
        }
        precondition(ZSTD_isError(written) == 0, "zstd compression cannot fail with a bound-sized buffer")
        out.removeSubrange(written...)
        return out
    }

    /// Decompresses one or more concatenated zstd frames, refusing to produce more than `limit` bytes.
    public static func decompress(_ input: [UInt8], limit: Int = 1 << 34) throws(CompressionError) -> [UInt8] {
        guard let stream = ZSTD_createDStream() else { throw CompressionError(description: "zstd: out of memory") }
        defer { ZSTD_freeDStream(stream) }
        ZSTD_initDStream(stream)
        var output = [UInt8]()
        let chunkSize = ZSTD_DStreamOutSize()
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        var lastResult = 0
        var failure: String?
        input.withUnsafeBytes { src in
            var inBuf = ZSTD_inBuffer(src: src.baseAddress, size: input.count, pos: 0)
            var produced = 0
            // Feed input until it is consumed and the decoder has nothing more to flush.
            repeat {
                produced = chunk.withUnsafeMutableBytes { dst in
                    var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: chunkSize, pos: 0)
                    lastResult = ZSTD_decompressStream(stream, &outBuf, &inBuf)
                    return outBuf.pos
                }
                if ZSTD_isError(lastResult) != 0 {
                    failure = String(cString: ZSTD_getErrorName(lastResult))
                    return
                }
                output.append(contentsOf: chunk[0..<produced])
                if output.count > limit {
                    failure = "decompressed size exceeds the limit of \(limit) bytes"
                    return
                }
            } while inBuf.pos < inBuf.size || produced == chunkSize
        }
        if let failure { throw CompressionError(description: "zstd: \(failure)") }
        if lastResult != 0 { throw CompressionError(description: "zstd: input ends in the middle of a frame") }
        return output
    }
}

/// gzip (RFC 1952) through the system zlib. Concatenated members are read as one stream, as gunzip does.
public enum Gzip {
    public static func decompress(_ input: [UInt8], limit: Int = 1 << 34) throws(CompressionError) -> [UInt8] {
        var stream = z_stream()
        // 15 + 32: zlib or gzip header, detected automatically.
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CompressionError(description: "gzip: cannot initialise zlib")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var failure: String?
        var finished = false
        var input = input
        input.withUnsafeMutableBytes { src in
            stream.next_in = src.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_in = uInt(src.count)
            while true {
                let status: Int32 = chunk.withUnsafeMutableBytes { dst in
                    stream.next_out = dst.baseAddress?.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(dst.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                output.append(contentsOf: chunk[0..<produced])
                if output.count > limit {
                    failure = "decompressed size exceeds the limit of \(limit) bytes"
                    return
                }
                if status == Z_STREAM_END {
                    if stream.avail_in == 0 {
                        finished = true
                        return
                    }
                    // Another gzip member follows.
                    inflateReset(&stream)
                    continue
                }
                if status == Z_BUF_ERROR && stream.avail_in == 0 { return }
                if status != Z_OK {
                    failure = stream.msg.map { String(cString: $0) } ?? "corrupt data (zlib status \(status))"
                    return
                }
            }
        }
        if let failure { throw CompressionError(description: "gzip: \(failure)") }
        if !finished { throw CompressionError(description: "gzip: input ends in the middle of a stream") }
        return output
    }

    /// Compresses to the gzip format (used by tests and OTLP responses).
    public static func compress(_ input: [UInt8], level: Int32 = 6) -> [UInt8] {
        var stream = z_stream()
        deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                      Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        var input = input
        let outCount = out.count
        input.withUnsafeMutableBytes { src in
            out.withUnsafeMutableBytes { dst in
                stream.next_in = src.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_in = uInt(src.count)
                stream.next_out = dst.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(outCount)
                _ = deflate(&stream, Z_FINISH)
            }
        }
        out.removeSubrange(Int(stream.total_out)...)
        return out
    }
}

/// Decompresses input according to its magic bytes; plain input is returned as it is.
public enum Decompressor {
    public static func decompress(_ input: [UInt8], limit: Int = 1 << 34) throws(CompressionError) -> [UInt8] {
        switch CompressionKind.detect(input) {
        case .none: return input
        case .gzip: return try Gzip.decompress(input, limit: limit)
        case .zstd: return try Zstd.decompress(input, limit: limit)
        }
    }
}
