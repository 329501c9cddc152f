import NIOCore
import NIOPosix

/// Binds a proxy's listening socket (the sidecar's inbound and outbound sides, the gateway's edge): every accepted
/// connection gets its addresses recorded in a ``DownstreamConnection`` and is then `configure`d.
enum ProxyListener {
    /// - Parameter place: what to name in an error, e.g. `sidecar.yaml: inbound.listen`.
    static func bind(
        group: any EventLoopGroup, host: String, port: Int, place: String,
        configure: @escaping @Sendable (any Channel, DownstreamConnection) throws -> Void
    ) async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let connection = DownstreamConnection()
                connection.remoteAddress = channel.remoteAddress.flatMap(UpstreamPool.describe)
                connection.localAddress = channel.localAddress.flatMap(UpstreamPool.describe)
                return channel.eventLoop.makeCompletedFuture { try configure(channel, connection) }
            }
        do {
            return try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw MeshError("\(place): cannot listen on \(host):\(port) (\(error)); choose another address")
        }
    }
}
