import NIOCore
import NIOHTTP1

/// After a `101 Switching Protocols` (a WebSocket upgrade), a proxied connection stops being HTTP: both
/// pipelines lose their HTTP handlers and a ``TunnelEnd`` on each side copies bytes to the other until either
/// side closes. Bytes the HTTP decoders had already read past the upgrade are forwarded, not lost.
enum ProxyTunnel {
    /// Splices the downstream connection (an HTTP server pipeline) and the upstream connection (an HTTP client
    /// pipeline). Both channels must be on the current event loop.
    static func splice(downstream: any Channel, upstream: any Channel) throws {
        let down = TunnelEnd()
        let up = TunnelEnd()
        down.peer = up
        up.peer = down

        let d = downstream.pipeline.syncOperations
        let requestDecoder = try d.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
        try d.addHandler(down, position: .after(requestDecoder))
        remove(EdgeHeadObserver.self, d)
        remove(ProxyHandler.self, d)
        remove(EdgeProtocolErrorHandler.self, d)
        remove(HTTPServerProtocolErrorHandler.self, d)
        remove(NIOHTTPResponseHeadersValidator.self, d)
        remove(HTTPServerPipelineHandler.self, d)
        remove(HTTPServerUpgradeHandler.self, d)
        remove(HTTPResponseEncoder.self, d)
        // Last: its left-over bytes (the client's first frames) go to the tunnel end now after it.
        d.removeHandler(requestDecoder, promise: nil)

        let u = upstream.pipeline.syncOperations
        let responseDecoder = try u.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
        try u.addHandler(up, position: .after(responseDecoder))
        remove(UpstreamRelay.self, u)
        remove(NIOHTTPRequestHeadersValidator.self, u)
        remove(HTTPRequestEncoder.self, u)
        u.removeHandler(responseDecoder, promise: nil)

        downstream.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        upstream.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        downstream.read()
        upstream.read()
    }

    private static func remove<H: RemovableChannelHandler>(_ type: H.Type, _ sync: ChannelPipeline.SynchronousOperations) {
        if let handler = try? sync.handler(type: type) { sync.removeHandler(handler, promise: nil) }
    }
}

/// One side of a byte tunnel: what it reads is written to the other side, flushed at the end of each read burst.
/// Backpressure: while the other side cannot take more (not writable), this side is not read.
final class TunnelEnd: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Cleared when either side closes (breaks the reference cycle).
    var peer: TunnelEnd?
    private var context: ChannelHandlerContext?
    private var pendingFlush = false
    private var paused = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let peer, let other = peer.context else { return }
        other.write(data, promise: nil)
        peer.pendingFlush = true
        if !other.channel.isWritable {
            paused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
            peer.pendingFlush = false
            other.flush()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let peer, peer.pendingFlush, let other = peer.context {
            peer.pendingFlush = false
            other.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let peer, peer.paused, let other = peer.context {
            peer.paused = false
            other.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            other.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let peer {
            self.peer = nil
            peer.peer = nil
            if let other = peer.context {
                // What is queued for the other side goes out first, then it is closed.
                let channel = other.channel
                other.writeAndFlush(NIOAny(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                    channel.close(promise: nil)
                }
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
