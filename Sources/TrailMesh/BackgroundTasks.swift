import TrailCore

/// The long-running loops of a component (renewal, CRL refresh, event shipping): started with ``spawn(_:)``,
/// cancelled and awaited together by ``stop()``, so that no request they have in flight outlives the event loops
/// shut down after it.
final class BackgroundTasks: Sendable {
    private let tasks = Locked<[Task<Void, Never>]>([])

    func spawn(_ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        tasks.withLock { $0.append(task) }
    }

    func stop() async {
        let running = tasks.withLock { t in defer { t = [] }; return t }
        for t in running { t.cancel() }
        for t in running { await t.value }
    }
}
