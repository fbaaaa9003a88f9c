package io.lagoon.internal;

import io.lagoon.PoolAcquireTimeoutException;
import io.lagoon.PoolClosedException;
import io.lagoon.PoolExhaustedException;
import io.lagoon.PoolStats;
import io.lagoon.PoolUnavailableException;
import io.r2dbc.spi.Connection;
import java.lang.ref.PhantomReference;
import java.lang.ref.Reference;
import java.lang.ref.ReferenceQueue;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Predicate;
import org.jspecify.annotations.Nullable;
import reactor.core.CoreSubscriber;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Operators;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;

/*
 * The pool's state machine. Everything that decides who gets which connection is in this class,
 * Acquire (one subscriber's acquire) and PooledEntry (one physical connection).
 *
 * STATE
 *   slots[maxSize]  null (free) or one PooledEntry: a physical connection being opened, open, or
 *                   being closed. Opening starts only after a CAS null -> entry on a slot; the slot
 *                   is freed (CAS entry -> null) only once the physical close finished or its
 *                   maxCloseTime passed.
 *   entry.stamp     (generation << 2) | state, state one of
 *                     IDLE     parked in its slot; anyone may take it by CAS
 *                     OWNED    held by exactly one pool actor: its creator, a releaser, an
 *                              acquirer, a closer
 *                     LENT     lent to the handle whose stamp equals it; that handle's close()
 *                              returns it by CAS (g,LENT) -> (g,OWNED)
 *                     CLOSING  the physical close is running
 *                   Each lend starts a new generation, so an earlier handle can never match again.
 *   waiters         FIFO deque of Acquires that wait. An Acquire leaves WAITING exactly once, by
 *                   CAS (assigned, cancelled, timed out, failed); dead nodes stay in the deque until
 *                   someone polls them or a sweep runs.
 *   pending         the number of Acquires in WAITING: a counter, never a queue scan.
 *   creating        physical connects in flight (bounded by maxConcurrentCreates).
 *
 * INVARIANTS
 *   I1 open + opening + closing <= maxSize, at every instant: each holds a slot.
 *   I2 A connection is lent to one subscriber at a time: only the winner of the CAS out of IDLE,
 *      or the entry's single owner, may make it LENT, and only the handle of that generation can
 *      give it back.
 *   I3 No lost wake-up: the pool never rests with an IDLE entry and a WAITING acquire. Whoever
 *      parks an entry IDLE then looks at the waiters; whoever enqueues a waiter then looks at the
 *      idle entries (a Dekker pair of volatile accesses, so at least one sees the other). A thread
 *      that finds both takes the entry and hands it to the HEAD waiter, not to itself.
 *   I4 Fairness: the fast path (take an idle entry without queueing) runs only when the waiter
 *      deque is empty, so no newcomer overtakes a waiter that was queued before it looked; entries
 *      always go to the head waiter.
 *   I5 An OWNED entry leaves OWNED exactly once: lent, parked IDLE, or closed.
 *   I6 After close() no entry is parked IDLE for good: shutdown sets `closed`, then closes the
 *      idle entries; whoever parks an entry re-checks `closed` afterwards (the same Dekker pair).
 *
 * THREADS
 *   No locks; any method may run on any thread. No subscriber code runs between a CAS and the
 *   bookkeeping that completes it. A subscriber is called on the thread that made its connection
 *   available: its own thread on the fast path, the releasing or connecting thread otherwise, so
 *   deliveries spread over the threads that free connections. A delivery made while the same
 *   thread is already delivering runs nested, up to eight levels, then queued (Trampoline): the
 *   stack stays bounded with synchronous drivers, and a subscriber that blocks on an acquire
 *   inside its own delivery is still served.
 */

/** The pool's state machine; see the comment at the top of this file. */
public final class PoolCore {

  private final PoolConfig config;
  private final String name;
  private final Scheduler scheduler;
  private final PoolClock clock;
  private final AtomicReferenceArray<@Nullable PooledEntry> slots;
  private final ConcurrentLinkedDeque<Acquire> waiters = new ConcurrentLinkedDeque<>();
  private final AtomicInteger pending = new AtomicInteger();
  private final AtomicInteger deadWaiters = new AtomicInteger();
  private final AtomicInteger creating = new AtomicInteger();
  private final Creator creator;
  private final Lifecycle lifecycle;
  private final AtomicInteger epoch = new AtomicInteger();
  private final AtomicBoolean closed = new AtomicBoolean();
  private volatile boolean closing;
  private volatile boolean forceClosed;
  private final Sinks.Empty<Void> idleClosed = Sinks.empty();
  private final Sinks.Empty<Void> terminated = Sinks.empty();

  private final LongAdder acquires = new LongAdder();
  private final LongAdder timeouts = new LongAdder();
  private final LongAdder rejections = new LongAdder();
  private final LongAdder closedCount = new LongAdder();
  private final LongAdder abandonedCount = new LongAdder();
  private final LongAdder unavailableCount = new LongAdder();
  private final AtomicInteger abandonedCloses = new AtomicInteger();
  private final ReferenceQueue<PooledConnection> abandoned = new ReferenceQueue<>();
  private final PoolerHints poolerHints;
  private final LeakDetector leaks;
  private final PoolEvents events = new PoolEvents(this);

  public PoolCore(PoolConfig config) {
    this.config = config;
    this.name = config.poolName();
    this.scheduler = config.scheduler();
    this.clock = PoolClock.of(scheduler);
    this.slots = new AtomicReferenceArray<>(config.maxSize());
    this.poolerHints = new PoolerHints(name);
    this.leaks = new LeakDetector(this, config, slots);
    this.lifecycle = new Lifecycle(this, config);
    this.creator = new Creator(this, lifecycle);
  }

  int epoch() {
    return epoch.get();
  }

  String name() {
    return name;
  }

  Scheduler scheduler() {
    return scheduler;
  }

  PoolConfig config() {
    return config;
  }

  long now() {
    return clock.nanoTime();
  }

  public boolean isClosed() {
    return closing;
  }

  // ---------------------------------------------------------------- acquire

  /**
   * A Mono that acquires a connection for each subscriber; {@code site}, from {@link
   * #borrowSite()}, is where it was asked for (null with leak detection off).
   */
  public Mono<Connection> acquireMono(@Nullable Throwable site) {
    return new Mono<>() {
      @Override
      public void subscribe(reactor.core.CoreSubscriber<? super Connection> actual) {
        actual.onSubscribe(new Acquire(PoolCore.this, actual, site));
      }
    };
  }

  /** The caller's stack, for {@link #acquireMono}, with leak detection on; else null. */
  public @Nullable Throwable borrowSite() {
    return leaks.borrowSite();
  }

  LeakDetector leaks() {
    return leaks;
  }

  void acquire(Acquire a) {
    if (closing) {
      a.fail(closedError("acquire refused"));
      return;
    }
    if (waiters.isEmpty()) {
      long now = now();
      PooledEntry e = takeIdle(true, now);
      if (e != null) {
        long s = e.takenStamp; // what this thread installed: closeLent may have moved on since
        if (PooledEntry.state(s) == PooledEntry.LENT) {
          if (!a.deliverNow(e, s)) {
            reclaim(e, s); // cancelled meanwhile
          }
          return;
        }
        a.failuresAtStart = creator.failures();
        if (a.assignNow(e, now, config.maxAcquireTime().toNanos())) {
          e.validateBeforeLend = false;
          lifecycle.validateThenDeliver(a, e); // idle too long: check it first, on a deadline
        } else {
          offer(e);
        }
        return;
      }
    }
    if (config.acquireRetry() == 0 && isDown()) {
      if (a.fail(unavailableError())) { // nothing open to wait for, connects fail: fail fast
        unavailableCount.increment();
      }
      return;
    }
    enqueue(a);
  }

  /**
   * Down: the last connect failed and no connection is open, so a waiter could only wait for the
   * back-off and the next connect. One volatile read while connects succeed.
   */
  boolean isDown() {
    return creator.failureStreak() > 0 && !hasOpenConnection();
  }

  /** Whether some connection is open: idle, lent, or held by the pool (validating, resetting). */
  boolean hasOpenConnection() {
    for (int i = 0, n = slots.length(); i < n; i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.connection != null && e.state() != PooledEntry.CLOSING) {
        return true;
      }
    }
    return false;
  }

  private PoolUnavailableException unavailableError() {
    long now = now();
    Throwable cause = creator.lastError();
    return new PoolUnavailableException(name, creator.failureStreak(),
        Duration.ofNanos(Math.max(0, now - creator.lastErrorNanos())),
        Duration.ofNanos(Math.max(0, creator.retryAtNanos() - now)), stats(),
        cause != null ? cause : new IllegalStateException("no connect error recorded"));
  }

  /** Validates the entry first if it must, then delivers it. */
  void dispatch(Acquire a, PooledEntry e) {
    if (e.validateBeforeLend) {
      e.validateBeforeLend = false;
      lifecycle.validateThenDeliver(a, e);
    } else {
      deliver(a, e);
    }
  }

  /**
   * Delivers an OWNED entry to its assigned acquire, unless the pool closed meanwhile (during a
   * validation, say): then the connection is closed and the acquire fails, so close() completes.
   */
  void deliver(Acquire a, PooledEntry e) {
    if (closing) {
      destroy(e);
      a.failAssigned(closedError("the pool closed while this subscriber's connection was made"
          + " ready"));
      return;
    }
    a.deliver(e);
  }

  /** An acquire whose connection failed validation goes back to the head of the queue. */
  void requeue(Acquire a) {
    if (!a.requeue()) {
      return; // it was cancelled or timed out meanwhile
    }
    pending.incrementAndGet();
    waiters.offerFirst(a);
    afterQueued();
  }

  private void enqueue(Acquire a) {
    reclaimAbandoned(); // the pool looks busy: connections nobody can close any more come back
    int p;
    do {
      p = pending.get();
      if (p >= config.maxPendingAcquires()) {
        rejections.increment();
        a.fail(new PoolExhaustedException(name, config.maxPendingAcquires(), stats()));
        return;
      }
    } while (!pending.compareAndSet(p, p + 1));
    // Joining a pool that is down counts as having seen its last connect failure.
    a.failuresAtStart = creator.failures() - (isDown() ? 1 : 0);
    if (!a.startWaiting(now(), config.maxAcquireTime().toNanos())) {
      pending.decrementAndGet(); // cancelled before it could wait
      return;
    }
    waiters.offerLast(a);
    afterQueued();
  }

  /**
   * After a waiter joined the queue: fail it if the pool closed meanwhile (I6), else hand it an
   * idle entry (I3, the waiter's half) or start a connect for it.
   */
  private void afterQueued() {
    if (closing) {
      failWaiters();
      return;
    }
    if (isDown()) {
      // A connect may have failed as this waiter joined, and its scan missed the waiter.
      failWaitersAfterRetries(creator.failures());
      if (waiters.isEmpty()) {
        return;
      }
    }
    handIdleToWaiters();
    creator.createIfNeeded();
  }

  /** I3, the waiter's half: after enqueueing, idle entries go to the head waiters. */
  private void handIdleToWaiters() {
    while (!waiters.isEmpty()) {
      PooledEntry e = takeIdle(false, now());
      if (e == null) {
        return;
      }
      offer(e);
    }
  }

  /**
   * Takes an idle entry, lowest slot first, closing any that must retire. With {@code lend}, a
   * fresh entry comes back LENT to a new generation (the fast path's single CAS) and one that must
   * be validated comes back OWNED; without, the entry is OWNED and flagged for validation if due.
   */
  private @Nullable PooledEntry takeIdle(boolean lend, long now) {
    for (int i = 0, n = slots.length(); i < n; i++) {
      PooledEntry e = slots.get(i);
      long s;
      if (e == null || PooledEntry.state(s = e.stamp()) != PooledEntry.IDLE) {
        continue;
      }
      if (lifecycle.mustRetire(e, now)) {
        if (e.takeIdle(s, false) != -1) {
          destroy(e);
        }
        continue;
      }
      boolean validate = lifecycle.mustValidate(e, now);
      if (!validate) {
        // Within the skip window only the round trip is skipped: the driver's local check runs on
        // every borrow, so a connection it already knows is closed is never lent.
        int local = Lifecycle.localCheck(e.connection());
        if (local == Lifecycle.DEAD) {
          if (e.takeIdle(s, false) != -1) {
            e.broken = true;
            destroy(e);
          }
          continue;
        }
        validate = local == Lifecycle.UNKNOWN;
      }
      long taken = e.takeIdle(s, lend && !validate);
      if (taken != -1) {
        e.takenStamp = taken;
        e.validateBeforeLend = validate;
        return e;
      }
    }
    return null;
  }

  /** Takes every idle entry that {@code which} selects, highest slot first. */
  List<PooledEntry> takeAllIdle(Predicate<PooledEntry> which) {
    List<PooledEntry> taken = new ArrayList<>();
    for (int i = slots.length() - 1; i >= 0; i--) {
      PooledEntry e = slots.get(i);
      long s;
      if (e != null && PooledEntry.state(s = e.stamp()) == PooledEntry.IDLE && which.test(e)
          && e.takeIdle(s, false) != -1) {
        taken.add(e); // the choice was made on the same reading the CAS checks
      }
    }
    return taken;
  }

  int idleCount() {
    int n = 0;
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.state() == PooledEntry.IDLE) {
        n++;
      }
    }
    return n;
  }

  /** Makes an OWNED entry LENT to a new generation and returns its handle. */
  PooledConnection lend(PooledEntry e, @Nullable Throwable site) {
    long s = PooledEntry.nextLend(e.stamp());
    e.setStamp(s);
    if (closing) {
      lentWhileClosing(e, s); // I6: shutdown may have looked at this entry while it was OWNED
    }
    return handle(e, s, site);
  }

  /**
   * A lend that raced with shutdown: a forced close (closeLent) that already ran closes it now,
   * under its borrower; otherwise close() may now be done waiting for the entries it could close.
   */
  private void lentWhileClosing(PooledEntry e, long s) {
    if (forceClosed && e.cas(s, PooledEntry.withState(s, PooledEntry.OWNED))) {
      destroy(e);
    } else {
      checkTerminated();
    }
  }

  /** The handle of a lend that already happened, asked for at {@code site} (leak detection). */
  PooledConnection handle(PooledEntry e, long stamp, @Nullable Throwable site) {
    acquires.increment();
    events.lent(e);
    leaks.lent(e, stamp, site);
    PooledConnection h = new PooledConnection(this, e, stamp);
    e.lendWatch = new LendWatch(h, abandoned, e, stamp);
    return h;
  }

  /**
   * A phantom reference to one lend's handle. The entry holds it while the lend lasts; once the
   * handle is unreachable without having been closed (an operator such as {@code timeout()} dropped
   * the connection as it arrived, or the application lost it), the garbage collector queues it and
   * {@link #reclaimAbandoned} takes the connection back. A released entry drops its watch, so a
   * closed handle that is collected later queues nothing.
   */
  private static final class LendWatch extends PhantomReference<PooledConnection> {
    final PooledEntry entry;
    final long stamp;

    LendWatch(PooledConnection handle, ReferenceQueue<PooledConnection> queue, PooledEntry entry,
        long stamp) {
      super(handle, queue);
      this.entry = entry;
      this.stamp = stamp;
    }
  }

  /**
   * Takes back every connection whose handle the garbage collector found unreachable while still
   * lent to it: nobody can close it any more. Its state is unknown (a transaction may be open), so
   * it is closed, not reset, and its slot freed. Runs on the slow path of acquire and in
   * housekeeping; costs one volatile read when nothing was abandoned.
   */
  void reclaimAbandoned() {
    Reference<? extends PooledConnection> r;
    while ((r = abandoned.poll()) != null) {
      LendWatch w = (LendWatch) r;
      PooledEntry e = w.entry;
      if (e.cas(w.stamp, PooledEntry.withState(w.stamp, PooledEntry.OWNED))) {
        abandonedCount.increment();
        e.evictReason = io.lagoon.PoolListener.EvictionReason.ABANDONED;
        leaks.abandoned(e, w.stamp, stats()); // the WARN, with the borrow site if known
        destroy(e);
      }
    }
  }

  /** An entry the fast path lent with {@code stamp} but could not deliver: taken back, offered. */
  private void reclaim(PooledEntry e, long stamp) {
    if (e.cas(stamp, PooledEntry.withState(stamp, PooledEntry.OWNED))) {
      offer(e);
    } // else the pool's shutdown took it (closeLent) and closes it
  }

  /** Called once per Acquire that leaves WAITING other than by assignment. */
  void waiterLeft(boolean leavesDeadNode) {
    pending.decrementAndGet();
    if (leavesDeadNode && deadWaiters.incrementAndGet() > Math.max(64, pending.get())) {
      deadWaiters.set(0);
      waiters.removeIf(w -> w.state() != Acquire.WAITING);
    }
  }

  // ---------------------------------------------------------------- release

  /**
   * Gives an OWNED, healthy entry to the head waiter, or parks it IDLE. I3, the releaser's half:
   * after parking, if a waiter appeared, take the entry back and try again.
   */
  void offer(PooledEntry e) {
    offer(e, now());
  }

  /**
   * As {@link #offer(PooledEntry)}, at the instant {@code now}. A new connection is offered at the
   * instant its lifetime started, so however short maxLifeTime is, it is never retired before it
   * served a waiter or was parked: a connect never just triggers the next one.
   */
  void offer(PooledEntry e, long now) {
    for (;;) {
      if (closing || lifecycle.mustRetire(e, now)) {
        destroy(e); // shut down, broken, soft-evicted or past its lifetime: never lent again
        return;
      }
      Acquire w;
      while ((w = waiters.pollFirst()) != null) {
        if (w.assign(e)) {
          pending.decrementAndGet();
          Trampoline.run(w);
          return;
        }
      }
      e.idleSinceNanos = now;
      long idle = PooledEntry.withState(e.stamp(), PooledEntry.IDLE);
      e.setStamp(idle);
      if (waiters.isEmpty() && !closing) {
        return;
      }
      if (!e.cas(idle, PooledEntry.withState(idle, PooledEntry.OWNED))) {
        return; // someone else took it and is now responsible for it
      }
    }
  }

  /**
   * A handle's close(): only the handle of the current lend may return the entry. A returned
   * connection that is broken, soft-evicted or past its lifetime is closed; one the borrower left
   * dirty is reset first (closed if that fails); then it goes to the head waiter or to idle.
   * {@code actual} completes once that is decided.
   */
  void release(PooledEntry e, long lentStamp, int dirty, CoreSubscriber<? super Void> actual) {
    if (e.stamp() != lentStamp) {
      Operators.complete(actual); // a second close, or the pool already took it back
      return;
    }
    e.lendWatch = null; // closed: this handle's collection must not reclaim the next lend
    long now = now();
    events.returned(e, now);
    leaks.returned(e, lentStamp, now);
    boolean reset;
    try {
      reset = lifecycle.needsReset(e, dirty);
    } catch (RuntimeException driverFailed) {
      e.broken = true; // the driver cannot even report its state: never lend it again
      reset = true;
    }
    if (!reset && waiters.isEmpty() && !closing && !lifecycle.mustRetire(e, now)) {
      // Fast return: nothing to undo and nobody waiting, so one CAS parks the entry. The times
      // are written first and published by the CAS; then I3/I6's re-check, as in offer().
      e.lastAliveNanos = now;
      e.idleSinceNanos = now;
      long idle = PooledEntry.withState(lentStamp, PooledEntry.IDLE);
      if (e.cas(lentStamp, idle) && (!waiters.isEmpty() || closing || e.epoch != epoch())
          && e.cas(idle, PooledEntry.withState(idle, PooledEntry.OWNED))) {
        offerReturned(e, now); // a waiter came, the pool closed or a soft eviction ran meanwhile
      }
      Operators.complete(actual);
      return;
    }
    if (!e.cas(lentStamp, PooledEntry.withState(lentStamp, PooledEntry.OWNED))) {
      Operators.complete(actual);
      return;
    }
    if (closing || lifecycle.mustRetire(e, now)) {
      destroy(e);
      Operators.complete(actual);
    } else if (!reset) {
      e.lastAliveNanos = now;
      offerReturned(e, now);
      Operators.complete(actual);
    } else {
      actual.onSubscribe(Operators.emptySubscription());
      Mono.defer(() -> lifecycle.reset(e, dirty)).subscribe(null, error -> {
        e.evictReason = io.lagoon.PoolListener.EvictionReason.BROKEN; // the reset failed
        destroy(e);
        actual.onComplete();
      }, () -> {
        long after = now();
        e.lastAliveNanos = after;
        offer(e, after);
        actual.onComplete();
      });
    }
  }

  /**
   * Offers a returned connection that needs no reset, which may go straight to a waiter: after the
   * driver's local check, as every borrow from idle gets, so a connection whose server went away
   * while it was lent is closed instead of lent (an answer that comes later makes the waiter's
   * delivery validate it first).
   */
  private void offerReturned(PooledEntry e, long now) {
    int local = Lifecycle.localCheck(e.connection());
    if (local == Lifecycle.DEAD) {
      e.broken = true;
      destroy(e);
      return;
    }
    e.validateBeforeLend = local == Lifecycle.UNKNOWN;
    offer(e, now);
  }

  /**
   * An error came through a lent connection: if it means the connection is gone, mark it (it is
   * closed when it comes back); if the server went away, check the idle ones now.
   */
  void onConnectionError(PooledEntry e, Throwable error) {
    int verdict = FatalErrors.classify(error);
    if (verdict != FatalErrors.NOT_FATAL) {
      e.broken = true;
      if (verdict == FatalErrors.SERVER_GONE) {
        lifecycle.checkIdleNow();
      }
    } else {
      poolerHints.onError(error);
    }
  }

  /** Starts connects for minIdle and waiters, if any are missing. */
  void refill() {
    creator.createIfNeeded();
  }

  /**
   * Closes every idle connection and retires every lent one when it comes back, then opens as
   * many connections as the pool held before.
   */
  public Mono<Void> softEvict() {
    return Mono.defer(() -> {
      int before = allocated();
      epoch.incrementAndGet();
      List<Mono<Void>> closes = new ArrayList<>();
      for (PooledEntry e : takeAllIdle(e -> true)) {
        closes.add(destroy(e));
      }
      return Mono.when(closes).then(creator.fill(before)).then();
    });
  }

  /**
   * While the pool is down, fails the oldest waiters that saw more than acquireRetry connect
   * failures (a waiter that joined while the pool was down counts that failure too).
   */
  void failWaitersAfterRetries(long failures) {
    int retries = config.acquireRetry();
    if (retries == Integer.MAX_VALUE) {
      return;
    }
    PoolUnavailableException error = null;
    for (Acquire w : waiters) {
      if (w.state() != Acquire.WAITING) {
        continue;
      }
      if (failures - w.failuresAtStart <= retries) {
        return; // later waiters started later and saw fewer failures
      }
      if (error == null) {
        error = unavailableError();
      }
      if (w.failWaiting(error)) {
        unavailableCount.increment();
      }
    }
  }

  // ---------------------------------------------------------------- creation

  /** Reserves a free slot for a new entry; -1 when the pool is full. */
  int reserveSlot(PooledEntry e) {
    for (int i = 0, n = slots.length(); i < n; i++) {
      if (slots.get(i) == null && slots.compareAndSet(i, null, e)) {
        e.slot = i;
        return i;
      }
    }
    return -1;
  }

  boolean hasFreeSlot() {
    for (int i = 0, n = slots.length(); i < n; i++) {
      if (slots.get(i) == null) {
        return true;
      }
    }
    return false;
  }

  /** Connections taken back because their handle was collected without close(). */
  long abandoned() {
    return abandonedCount.sum();
  }

  int allocated() {
    int n = 0;
    for (int i = 0; i < slots.length(); i++) {
      if (slots.get(i) != null) {
        n++;
      }
    }
    return n;
  }

  int pendingCount() {
    return pending.get();
  }

  AtomicInteger creatingCounter() {
    return creating;
  }

  /** Frees the slot of an entry whose physical connection is gone (or never came). */
  void freeSlot(PooledEntry e) {
    slots.compareAndSet(e.slot, e, null);
    creator.createIfNeeded();
    checkTerminatedIfClosing();
  }

  // ---------------------------------------------------------------- closing connections

  /**
   * Closes an OWNED entry's physical connection, bounded by maxCloseTime, then frees its slot.
   * Returns the completion of that, already under way.
   */
  Mono<Void> destroy(PooledEntry e) {
    e.setStamp(PooledEntry.withState(e.stamp(), PooledEntry.CLOSING));
    events.evicted(e);
    if (!waiters.isEmpty() && isDown()) {
      failWaitersAfterRetries(creator.failures()); // the last open connection went: fail fast
    }
    Connection c = e.connection;
    if (c == null) {
      freeSlot(e);
      return Mono.empty();
    }
    Close close = new Close(e);
    close.start(c);
    return close.done.asMono();
  }

  /**
   * One physical close, bounded by maxCloseTime. A close that ends in time frees its slot then. One
   * that hangs past maxCloseTime is abandoned: its slot is freed so the pool can replace the
   * connection, while the close goes on; at most {@code maxSize} abandoned closes may be pending
   * at once, beyond that a hanging close keeps its slot until it really ends. So the pool never has
   * more than {@code maxSize} connections open, opening or closing within maxCloseTime, and never
   * more than twice that many sockets, however the driver's closes hang.
   */
  private final class Close implements Runnable {
    private static final int RUNNING = 0;
    private static final int ENDED = 1;
    private static final int ABANDONED = 2;
    private static final int OVER_BUDGET = 3;

    final PooledEntry entry;
    final Sinks.Empty<Void> done = Sinks.empty();
    private final AtomicInteger state = new AtomicInteger(RUNNING);
    private volatile @Nullable Disposable timer;

    Close(PooledEntry entry) {
      this.entry = entry;
    }

    void start(Connection c) {
      try {
        timer = Timers.after(scheduler, config.maxCloseTime(), this);
      } catch (java.util.concurrent.RejectedExecutionException schedulerGone) {
        timer = null; // no bound without a scheduler: the slot waits for the close itself
      }
      Mono.defer(() -> Mono.from(c.close())).subscribe(null, err -> ended(), this::ended);
    }

    /** maxCloseTime passed first. */
    @Override
    public void run() {
      boolean counted = abandonedCloses.incrementAndGet() <= config.maxSize();
      if (!counted) {
        abandonedCloses.decrementAndGet();
      }
      if (!state.compareAndSet(RUNNING, counted ? ABANDONED : OVER_BUDGET)) {
        if (counted) {
          abandonedCloses.decrementAndGet(); // it ended meanwhile
        }
        return;
      }
      if (counted) {
        finish();
      }
    }

    private void ended() {
      Disposable t = timer;
      if (t != null) {
        t.dispose();
      }
      int before = state.getAndSet(ENDED);
      if (before == ABANDONED) {
        abandonedCloses.decrementAndGet(); // its slot was freed at maxCloseTime
      } else if (before != ENDED) {
        finish();
      }
    }

    private void finish() {
      closedCount.increment();
      freeSlot(entry);
      done.tryEmitEmpty();
    }
  }


  // ---------------------------------------------------------------- shutdown

  /** Starts shutdown; completes when idle connections and connects in flight are closed. */
  public Mono<Void> close() {
    return Mono.defer(() -> {
      shutdown();
      return idleClosed.asMono();
    });
  }

  /**
   * Starts shutdown; lent connections may finish for up to {@code grace}, then they are closed
   * under their borrowers. Completes when every connection is closed.
   */
  public Mono<Void> closeGracefully(Duration grace) {
    return Mono.defer(() -> {
      shutdown();
      return terminated.asMono()
          .timeout(grace, scheduler)
          .onErrorResume(java.util.concurrent.TimeoutException.class, t -> {
            closeLent();
            return terminated.asMono();
          });
    });
  }

  /** Starts shutdown and waits, for a bounded time, until idle connections are closed. */
  public void dispose() {
    shutdown();
    try {
      idleClosed.asMono().block(config.maxCloseTime().plusSeconds(1));
    } catch (RuntimeException e) {
      // Not allowed to block on this thread, or closing took too long: shutdown goes on in the
      // background; dispose() has done what it promises (new acquires are refused).
    }
  }

  private void shutdown() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    closing = true;
    // Housekeeping goes on until every connection is closed: it takes back connections whose
    // handles are collected without close() and reports lends past leakDetectionThreshold, which a
    // closing pool still waits for; it stops once the pool has terminated.
    failWaiters();
    creator.shutdown();
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.takeIdle(false) != -1) {
        destroy(e);
      }
    }
    checkTerminated();
  }

  private void failWaiters() {
    Acquire w;
    while ((w = waiters.pollFirst()) != null) {
      w.fail(closedError("the pool closed while this subscriber waited"));
    }
  }

  private void closeLent() {
    forceClosed = true; // before the scan: a lend after it sees the flag (lentWhileClosing)
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e == null) {
        continue;
      }
      long s = e.stamp();
      if (PooledEntry.state(s) == PooledEntry.LENT
          && e.cas(s, PooledEntry.withState(s, PooledEntry.OWNED))) {
        destroy(e);
      }
    }
  }

  void checkTerminatedIfClosing() {
    if (closing) {
      checkTerminated();
    }
  }

  private void checkTerminated() {
    boolean empty = true;
    boolean onlyLent = true;
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e != null) {
        empty = false;
        if (e.state() != PooledEntry.LENT) {
          onlyLent = false;
        }
      }
    }
    if (onlyLent && creating.get() == 0) {
      idleClosed.tryEmitEmpty();
    }
    if (empty && creating.get() == 0) {
      lifecycle.stop();
      idleClosed.tryEmitEmpty();
      terminated.tryEmitEmpty();
      events.terminated();
    }
  }

  // ---------------------------------------------------------------- stats and errors

  public PoolStats stats() {
    int allocated = 0;
    int idle = 0;
    int lent = 0;
    for (int i = 0; i < slots.length(); i++) {
      PooledEntry e = slots.get(i);
      if (e == null) {
        continue;
      }
      allocated++;
      int s = e.state();
      if (s == PooledEntry.IDLE) {
        idle++;
      } else if (s == PooledEntry.LENT) {
        lent++;
      }
    }
    return new PoolStats(name, config.maxSize(), allocated, idle, lent, Math.max(0, pending.get()),
        acquires.sum(), timeouts.sum(), rejections.sum(), creator.created(), closedCount.sum(),
        creator.failures(), unavailableCount.sum(), abandonedCount.sum(), leaks.reported());
  }

  PoolAcquireTimeoutException timeoutError(Acquire a) {
    timeouts.increment();
    long waited = now() - a.waitStartNanos;
    return new PoolAcquireTimeoutException(name, config.maxAcquireTime(), Duration.ofNanos(waited),
        stats(), creator.failureSince(a.waitStartNanos));
  }

  PoolClosedException closedError(String what) {
    return new PoolClosedException(name, what, stats());
  }

  /** Opens connections up to {@code initialSize}; emits how many it opened. */
  public Mono<Integer> warmup() {
    return creator.warmup(config.initialSize());
  }

  /** Starts opening {@code initialSize} connections in the background. */
  public void start() {
    creator.startInitialFill(config.initialSize());
    lifecycle.start();
  }

  // ---------------------------------------------------------------- observers (meters, health)

  /** The pool's listeners and the events they receive. */
  public PoolEvents events() {
    return events;
  }

  /** The most subscribers that may wait at once ({@code Integer.MAX_VALUE}: unbounded). */
  public int maxPendingAcquires() {
    return config.maxPendingAcquires();
  }

  /**
   * How long the oldest waiting acquire has waited; 0 when none waits. Amortized O(1): it reads
   * the head of the queue and drops the dead nodes it meets there, each of them once.
   */
  public long oldestWaitNanos() {
    if (pending.get() <= 0) {
      return 0;
    }
    for (java.util.Iterator<Acquire> it = waiters.iterator(); it.hasNext(); ) {
      Acquire a = it.next();
      if (a.state() == Acquire.WAITING) {
        return Math.max(0, now() - a.waitStartNanos);
      }
      it.remove(); // cancelled, timed out or failed: nobody polled it yet
    }
    return 0;
  }

  /** The connect error that keeps the pool down (no connection open, last connect failed), or null. */
  public @Nullable Throwable downCause() {
    if (!isDown()) {
      return null;
    }
    Throwable e = creator.lastError();
    return e != null ? e : new IllegalStateException("connects fail");
  }

  /**
   * How long ago the most recently working idle connection was last seen working (returned after
   * use, validated, opened); -1 when no connection is idle.
   */
  public long freshestIdleNanos() {
    long now = now();
    long best = -1;
    for (int i = 0, n = slots.length(); i < n; i++) {
      PooledEntry e = slots.get(i);
      if (e != null && e.state() == PooledEntry.IDLE) {
        long age = Math.max(0, now - e.lastAliveNanos);
        best = best < 0 ? age : Math.min(best, age);
      }
    }
    return best;
  }

  @Override
  public String toString() {
    return "PoolCore[" + name + ", " + stats() + "]";
  }
}
