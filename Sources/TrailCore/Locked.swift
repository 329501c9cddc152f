#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a pthread mutex, for state shared between threads and tasks.
///
/// Trail uses this rather than `Synchronization.Mutex`: on Linux that lock is handed over through the kernel
/// (priority-inheritance futexes) in code ThreadSanitizer does not see, so every contended hand-over shows up as a
/// false data race, and `.ci/sanitize thread` could not tell real races from them. pthread mutexes are intercepted.
public final class Locked<Value> {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value while holding the lock; `body` must not call back into the same `Locked`.
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

/// Shared across threads only when what it guards may be: a non-Sendable reference taken out of the lock would
/// otherwise be shared with no check.
extension Locked: @unchecked Sendable where Value: Sendable {}
