import Foundation
import TrailCore
import TrailStore

/// The single writer between senders and the store.
///
/// Requests submit parsed records and wait; a dedicated thread takes whatever is queued (up to a batch limit),
/// stores it in one transaction, answers every waiting sender once the transaction has committed (records are
/// then durable in the WAL), and correlates the traces the batch touched before taking the next batch. The
/// queue is bounded in records: a submission that would overflow it is refused at once with a Retry-After
/// hint, so a burst or a slow disk turns into 429s, never into unbounded memory.
public final class IngestPipeline: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Most items waiting at once, all submissions together: records plus the spans, observations and
        /// events they carry. Default 100,000 (roughly 100–200 MB).
        public var maxQueuedRecords = 100_000
        /// Most records stored in one transaction.
        public var maxBatchRecords = 20_000
        /// Under sustained load, the cross-chain findings (edge-bypass, credential-anomaly) are recomputed at least this often.
        public var crossChainInterval = 10.0
        /// Most traces correlated in one transaction. One such slice runs between any two stored batches, so
        /// correlation keeps pace with storage and senders never wait behind a long correlation pass.
        public var correlationChunk = 500

        public init() {}
    }

    /// The outcome of one submission.
    public enum Outcome: Sendable {
        /// Stored durably.
        case stored(IngestCounts)
        /// The queue is full: retry after this many seconds.
        case overloaded(retryAfterSeconds: Int)
        /// The store failed (disk full, I/O error): nothing of this submission is stored; retry later.
        case failed(String)
    }

    public let store: TrailStore
    public let configuration: Configuration
    private let condition = NSCondition()
    private var queue: [Pending] = []
    private var queuedRecords = 0
    private var stopping = false
    private var thread: Thread?
    /// Called after each batch with its counts and the time it took (for metrics).
    private let onBatch: @Sendable (_ submissions: [(source: String, counts: IngestCounts)], _ seconds: Double) -> Void
    /// Where the writer reports that the store stopped (and started again) taking writes.
    private let log: @Sendable (String) -> Void

    private final class Pending: @unchecked Sendable {
        let results: [ParseResult]
        let source: String
        let records: Int
        var continuation: CheckedContinuation<Outcome, Never>?
        init(results: [ParseResult], source: String, continuation: CheckedContinuation<Outcome, Never>) {
            self.results = results
            self.source = source
            // Weigh by what a request carries (an OTLP request is one record holding many spans).
            self.records = max(1, results.reduce(0) { n, r in
                n + 1 + (r.record.map { $0.observations.count + $0.identityEvents.count + $0.partialRejections.count } ?? 0)
            })
            self.continuation = continuation
        }
    }

    public init(
        store: TrailStore, configuration: Configuration = .init(),
        onBatch: @escaping @Sendable ([(source: String, counts: IngestCounts)], Double) -> Void = { _, _ in },
        log: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    ) {
        self.store = store
        self.configuration = configuration
        self.log = log
        self.onBatch = onBatch
    }

    /// Records waiting to be stored.
    public var queueDepth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queuedRecords
    }

    /// Traces stored but not yet correlated.
    public var uncorrelatedTraces: Int {
        condition.lock()
        defer { condition.unlock() }
        return uncorrelatedCount
    }

    public var isRunning: Bool {
        condition.lock()
        defer { condition.unlock() }
        return thread != nil && !stopping
    }

    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        let t = Thread { [weak self] in self?.run() }
        t.name = "trail-store-writer"
        thread = t
        t.start()
    }

    /// Stops taking submissions; what is queued is still stored. Waits for the writer to finish.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        while true {
            condition.lock()
            let done = thread == nil
            condition.unlock()
            if done { return }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    /// Queues parse results for storage and waits until they are durable (or refused).
    public func submit(_ results: [ParseResult], source: String) async -> Outcome {
        await withCheckedContinuation { continuation in
            condition.lock()
            defer { condition.unlock() }
            let pending = Pending(results: results, source: source, continuation: continuation)
            if stopping || thread == nil {
                pending.continuation = nil
                continuation.resume(returning: .overloaded(retryAfterSeconds: 5))
                return
            }
            if queuedRecords + pending.records > configuration.maxQueuedRecords && queuedRecords > 0 {
                pending.continuation = nil
                continuation.resume(returning: .overloaded(retryAfterSeconds: 1))
                return
            }
            queue.append(pending)
            queuedRecords += pending.records
            condition.signal()
        }
    }

    /// Traces stored but not yet correlated, and when correlation last ran.
    private var uncorrelated = DirtySet()
    private var correlatedSinceLastBatch = false
    private var lastCrossChain = Date()
    private var lastBatchTraces = 0
    private var pendingCrossChain = false
    private var uncorrelatedCount = 0
    /// Whether the store's last write failed, and whether that episode was logged (writer thread only): the log
    /// says so once, however many senders hear 503 meanwhile, and once more when writes succeed again; at most
    /// one such pair a minute while the store flaps.
    private var writesFailing = false
    private var failureLogged = false
    private var lastFailureLog = Date.distantPast

    private func run() {
        resumeCorrelation()
        while true {
            condition.lock()
            // Alternate: one slice of correlation, one batch of storage.
            if !uncorrelated.isEmpty && !correlatedSinceLastBatch {
                correlatedSinceLastBatch = !queue.isEmpty
                condition.unlock()
                correlatePending()
                continue
            }
            if (!uncorrelated.isEmpty || pendingCrossChain) && queue.isEmpty {
                condition.unlock()
                correlatePending()
                continue
            }
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                thread = nil
                condition.unlock()
                return
            }
            var batch: [Pending] = []
            var records = 0
            while let next = queue.first, batch.isEmpty || records + next.records <= configuration.maxBatchRecords {
                batch.append(queue.removeFirst())
                records += next.records
            }
            condition.unlock()

            let started = Date()
            do {
                let (counts, dirty) = try store.ingestBatch(batch.map { ($0.results, $0.source) })
                // Durable: answer the senders; correlation follows.
                finish(batch, records: records) { i in .stored(counts[i]) }
                writesSucceeded()
                onBatch(zip(batch, counts).map { ($0.source, $1) }, Date().timeIntervalSince(started))
                uncorrelated.formUnion(dirty)
                lastBatchTraces = dirty.traceIDs.count
                condition.lock()
                uncorrelatedCount = uncorrelated.traceIDs.count
                correlatedSinceLastBatch = false
                condition.unlock()
            } catch {
                writeFailed(error)
                finish(batch, records: records) { _ in .failed("the store could not write: \(TrailStore.summary(of: error))") }
            }
        }
    }

    /// Takes up the traces that were stored but not correlated when the last run ended (kill -9, power loss, a
    /// full disk at shutdown): they are correlated like new ones.
    private func resumeCorrelation() {
        do {
            let left = try store.uncorrelatedChains()
            guard !left.isEmpty else { return }
            uncorrelated.traceIDs.formUnion(left)
            pendingCrossChain = true
            condition.lock()
            uncorrelatedCount = uncorrelated.traceIDs.count
            condition.unlock()
            log("trail serve: correlating \(left.count) traces stored but not correlated before the last stop")
        } catch {
            log("trail serve: cannot look for traces left uncorrelated: \(error); `trail correlate` rebuilds them")
        }
    }

    /// Correlates a slice of the pending traces (at most `correlationChunk` per transaction, so that a batch
    /// of senders never waits long for the store); the cross-chain pass runs when nothing is left.
    private func correlatePending() {
        // A slice at least as large as what the last batch dirtied, so that correlation keeps pace.
        let chunk = max(configuration.correlationChunk, lastBatchTraces)
        var slice = DirtySet()
        if uncorrelated.traceIDs.count <= chunk {
            slice = uncorrelated
            uncorrelated = DirtySet()
        } else {
            let ids = Array(uncorrelated.traceIDs.prefix(chunk))
            // Identity changes travel with the first slice; they mark their own traces inside the pass.
            slice = uncorrelated
            slice.traceIDs = Set(ids)
            var rest = uncorrelated.traceIDs
            rest.subtract(ids)
            uncorrelated = DirtySet()
            uncorrelated.traceIDs = rest
        }
        condition.lock()
        uncorrelatedCount = uncorrelated.traceIDs.count + slice.traceIDs.count
        condition.unlock()
        defer {
            condition.lock()
            uncorrelatedCount = uncorrelated.traceIDs.count
            condition.unlock()
        }
        do {
            // The cross-chain pass reads every chain: run it when the backlog is done and the queue is idle,
            // or at least every `crossChainInterval` seconds under sustained load.
            condition.lock()
            let idle = queue.isEmpty
            condition.unlock()
            let crossChain = (uncorrelated.isEmpty && idle)
                || Date().timeIntervalSince(lastCrossChain) >= configuration.crossChainInterval
            try store.correlate(slice, crossChain: false)
            if crossChain || (pendingCrossChain && idle) {
                try store.recomputeCrossChainFindings()
                lastCrossChain = Date()
                pendingCrossChain = false
            } else {
                pendingCrossChain = true
            }
            writesSucceeded()
        } catch {
            condition.lock()
            let stopping = self.stopping
            condition.unlock()
            if TrailStore.isTransient(error) && !stopping {
                // The pass did not finish (or only its cross-chain findings failed; doing it again is harmless): keep
                // its traces for the next pass, and back off instead of spinning while the store refuses writes.
                writeFailed(error)
                uncorrelated.formUnion(slice)
                pendingCrossChain = true
                Thread.sleep(forTimeInterval: 1)
            } else {
                // Records are stored; `trail correlate` correlates what this pass could not.
                log("trail serve: correlation failed: \(error); `trail correlate` correlates these traces")
                pendingCrossChain = false
                if stopping { uncorrelated = DirtySet() }
            }
        }
    }

    private func writeFailed(_ error: any Error) {
        if !writesFailing {
            writesFailing = true
            failureLogged = false
        }
        // One line a minute at most, but a failure that outlasts the minute is always said (the last line is true).
        if !failureLogged && Date().timeIntervalSince(lastFailureLog) >= 60 {
            failureLogged = true
            lastFailureLog = Date()
            log("trail serve: the store cannot write (\(TrailStore.summary(of: error))); senders get 503 with Retry-After until it can")
        }
    }

    private func writesSucceeded() {
        guard writesFailing else { return }
        writesFailing = false
        if failureLogged { log("trail serve: the store writes again") }
    }

    private func finish(_ batch: [Pending], records: Int, _ outcome: (Int) -> Outcome) {
        condition.lock()
        queuedRecords -= records
        condition.unlock()
        for (i, p) in batch.enumerated() {
            p.continuation?.resume(returning: outcome(i))
            p.continuation = nil
        }
    }
}
