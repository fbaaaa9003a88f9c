package io.lagoon.internal;

import io.lagoon.PoolAcquireTimeoutException;
import io.lagoon.PoolClosedException;
import io.lagoon.PoolExhaustedException;
import io.lagoon.PoolStats;
import io.r2dbc.spi.Connection;
import java.time.Duration;
import java.util.concurrent.atomic.LongAdder;
import org.jspecify.annotations.Nullable;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Operators;
import reactor.core.scheduler.Scheduler;

/*
 * The pool's state machine. Everything that decides who gets which connection is in this class,
 * Acquire (one subscriber's acquire) and PooledEntry (one physical connection). The classes named
 * in [brackets] keep part of the state or carry out part of the work; they move an entry only by
 * the transitions stated here.
 *
 * STATE
 *   slots[maxSize]  [Slots] null (free) or one PooledEntry: a physical connection being opened,
 *                   open, or being closed. Opening starts only after a CAS null -> entry on a slot;
 *                   the slot is freed (CAS entry -> null) only once the physical close finished or
 *                   its maxCloseTime passed [Closer].
 *   entry.stamp     (generation << 2) | state, state one of
 *                     IDLE     parked in its slot; anyone may take it by CAS
 *                     OWNED    held by exactly one pool actor: its creator, a releaser, an
 *                              acquirer, a closer
 *                     LENT     lent to the handle whose stamp equals it; that handle's close()
 *                              returns it by CAS (g,LENT) -> (g,OWNED), as does the reclaim of a
 *                              handle collected without close() [AbandonedHandles]
 *                     CLOSING  the physical close is running [Closer]
 *                   Each lend starts a new generation, so an earlier handle can never match again.
 *   waiters         [Waiters] FIFO deque of Acquires that wait. An Acquire leaves WAITING exactly
 *                   once, by CAS (assigned, cancelled, timed out, failed); dead nodes stay in the
 *                   deque until someone polls them or a sweep runs.
 *   pending         [Waiters] the number of Acquires in WAITING: a counter, never a queue scan.
 *   creating        [Creator] physical connects in flight (bounded by maxConcurrentCreates).
 *   closing         set once by shutdown [Shutdown]; read here on every path that lends or parks.
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
 *   I6 After close() no entry is parked IDLE for good: shutdown wins `closed`, sets `closing`, then
 *      closes the idle entries; whoever parks an entry re-checks `closing` afterwards (the same
 *      Dekker pair), and a lend that sees it reports to Shutdown (lentWhileClosing).
 *
 * THREADS
 *   No locks; any method may run on any thread. No subscriber code runs between a CAS and the
 *   bookkeeping that completes it. A subscriber is called on the thread that made its connection
 *   available: its own thread on the fast path, the releasing or connecting thread otherwise, so
 *   deliveries spread over the threads that free connections. A delivery made while the same
 *   thread is already delivering runs nested, up to eight levels, then queued (Trampoline): the
 *   stack stays bounded with synchronous drivers, and a subscriber that blocks on an acquire
 *   inside its own delivery is still served.
 *
 * WHO DOES WHAT
 *   Here: acquire (fast path, queueing), takeIdle, lend, offer, release, destroy. Closer runs the
 *   physical closes destroy() starts; Shutdown runs close(); Outage fails acquires while the pool
 *   is down (last connect failed, nothing open), when this class or Creator asks. Creator opens
 *   connections and Lifecycle validates, resets and retires them, each through this class's
 *   transitions; LeakDetector and PoolEvents only observe.
 */

/** The pool's state machine; see the comment at the top of this file. */
public final class PoolCore {

  private final PoolConfig config;
  private final String name;
  private final Scheduler scheduler;
  private final PoolClock clock;
  private final Slots slots;
  private final Waiters waiters = new Waiters(this);
  private final Creator creator;
  private final Closer closer;
  private final Shutdown shutdown;
  private final Outage outage;
  private final Lifecycle lifecycle;
  private volatile boolean closing;

  private final LongAdder acquires = new LongAdder();
  private final LongAdder timeouts = new LongAdder();
  private final LongAdder rejections = new LongAdder();
  private final AbandonedHandles abandoned = new AbandonedHandles(this);
  private final LeakDetector leaks;
  private final PoolEvents events = new PoolEvents(this);

  public PoolCore(PoolConfig config) {
    this.config = config;
    this.name = config.poolName();
    this.scheduler = config.scheduler();
    this.clock = PoolClock.of(scheduler);
    this.slots = new Slots(config.maxSize());
    this.leaks = new LeakDetector(this, config, slots);
    this.lifecycle = new Lifecycle(this, config);
    this.creator = new Creator(this, lifecycle);
    this.closer = new Closer(this, config);
    this.shutdown = new Shutdown(this, lifecycle, creator);
    this.outage = new Outage(this, creator);
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

  Slots slots() {
    return slots;
  }

  Waiters waiters() {
    return waiters;
  }

  Lifecycle lifecycle() {
    return lifecycle;
  }

  Creator creator() {
    return creator;
  }

  Outage outage() {
    return outage;
  }

  AbandonedHandles abandoned() {
    return abandoned;
  }

  LeakDetector leaks() {
    return leaks;
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
          if (!a.deliverNow(e, s, now)) {
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
    if (config.acquireRetry() == 0 && outage.isDown()) {
      outage.failNow(a); // nothing open to wait for, connects fail: fail fast
      return;
    }
    enqueue(a);
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
    waiters.addFirst(a);
    afterQueued();
  }

  private void enqueue(Acquire a) {
    abandoned.reclaim(); // the pool looks busy: connections nobody can close any more come back
    if (!waiters.tryCount(config.maxPendingAcquires())) {
      rejections.increment();
      a.fail(new PoolExhaustedException(name, config.maxPendingAcquires(), stats()));
      return;
    }
    // Joining a pool that is down counts as having seen its last connect failure.
    a.failuresAtStart = creator.failures() - (outage.isDown() ? 1 : 0);
    if (!a.startWaiting(now(), config.maxAcquireTime().toNanos())) {
      waiters.uncount(); // cancelled before it could wait
      return;
    }
    waiters.addLast(a);
    afterQueued();
  }

  /**
   * After a waiter joined the queue: fail it if the pool closed meanwhile (I6), else hand it an
   * idle entry (I3, the waiter's half) or start a connect for it.
   */
  private void afterQueued() {
    if (closing) {
      waiters.failAll();
      return;
    }
    if (outage.isDown()) {
      // A connect may have failed as this waiter joined, and its scan missed the waiter.
      outage.failWaitersAfterRetries(creator.failures());
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

  /** Makes an OWNED entry LENT to a new generation and returns its handle. */
  PooledConnection lend(PooledEntry e, @Nullable Throwable site) {
    long s = PooledEntry.nextLend(e.stamp());
    e.setStamp(s);
    if (closing) {
      // I6: shutdown may have looked at this entry while it was OWNED
      shutdown.lentWhileClosing(e, s);
    }
    return handle(e, s, site, PoolEvents.NO_TIME);
  }

  /**
   * The handle of a lend that already happened, asked for at {@code site} (leak detection); {@code
   * now} is a clock reading the caller took just before (the fast path's), or {@link
   * PoolEvents#NO_TIME}.
   */
  PooledConnection handle(PooledEntry e, long stamp, @Nullable Throwable site, long now) {
    acquires.increment();
    events.lent(e, now);
    leaks.lent(e, stamp, site);
    PooledConnection h = new PooledConnection(this, e, stamp);
    e.lendWatch = abandoned.watch(h, e, stamp);
    return h;
  }

  /** An entry the fast path lent with {@code stamp} but could not deliver: taken back, offered. */
  private void reclaim(PooledEntry e, long stamp) {
    if (e.cas(stamp, PooledEntry.withState(stamp, PooledEntry.OWNED))) {
      offer(e);
    } // else the pool's shutdown took it (closeLent) and closes it
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
          waiters.uncount();
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
    long lentAt = e.lentAtNanos; // read before the CAS: afterwards a next lend may rewrite it
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
      if (e.cas(lentStamp, idle)) {
        events.returned(lentAt, now); // only the close that won: two racing closes count once
        if ((!waiters.isEmpty() || closing || e.epoch != lifecycle.epoch())
            && e.cas(idle, PooledEntry.withState(idle, PooledEntry.OWNED))) {
          offerReturned(e, now); // a waiter came, the pool closed or a soft eviction ran meanwhile
        }
      }
      Operators.complete(actual);
      return;
    }
    if (!e.cas(lentStamp, PooledEntry.withState(lentStamp, PooledEntry.OWNED))) {
      Operators.complete(actual);
      return;
    }
    events.returned(lentAt, now);
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

  // ---------------------------------------------------------------- closing connections

  /**
   * Closes an OWNED entry's physical connection, bounded by maxCloseTime, then frees its slot.
   * Returns the completion of that, already under way.
   */
  Mono<Void> destroy(PooledEntry e) {
    e.setStamp(PooledEntry.withState(e.stamp(), PooledEntry.CLOSING));
    events.evicted(e);
    if (!waiters.isEmpty() && outage.isDown()) {
      // the last open connection went: fail fast
      outage.failWaitersAfterRetries(creator.failures());
    }
    Connection c = e.connection;
    if (c == null) {
      freeSlot(e);
      return Mono.empty();
    }
    return closer.close(e, c);
  }

  /** Frees the slot of an entry whose physical connection is gone (or never came). */
  void freeSlot(PooledEntry e) {
    slots.free(e);
    creator.createIfNeeded();
    checkTerminatedIfClosing();
  }

  // ---------------------------------------------------------------- shutdown (see Shutdown)

  /** Starts shutdown; completes when idle connections and connects in flight are closed. */
  public Mono<Void> close() {
    return shutdown.close();
  }

  /**
   * Starts shutdown; lent connections may finish for up to {@code grace}, then they are closed
   * under their borrowers. Completes when every connection is closed.
   */
  public Mono<Void> closeGracefully(Duration grace) {
    return shutdown.closeGracefully(grace);
  }

  /** Starts shutdown and waits, for a bounded time, until idle connections are closed. */
  public void dispose() {
    shutdown.dispose();
  }

  /** Shutdown's first step, once: from now on every path that reads {@code closing} stops. */
  void markClosing() {
    closing = true;
  }

  void checkTerminatedIfClosing() {
    if (closing) {
      shutdown.checkTerminated();
    }
  }

  // ---------------------------------------------------------------- stats and errors

  public PoolStats stats() {
    Slots.Counts slot = slots.count();
    return new PoolStats(name, config.maxSize(), slot.allocated(), slot.idle(), slot.lent(),
        Math.max(0, waiters.pending()),
        acquires.sum(), timeouts.sum(), rejections.sum(), creator.created(), closer.closed(),
        creator.failures(), outage.unavailable(), abandoned.count(), leaks.reported());
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

  /** Closes every idle connection, retires every lent one when it comes back, then refills. */
  public Mono<Void> softEvict() {
    return lifecycle.softEvict();
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

  /**
   * How many connections the pool has lent: one per {@link io.lagoon.PoolListener#onAcquire}
   * with outcome {@code SUCCESS}, counted whether anyone listens or not.
   */
  public long acquireCount() {
    return acquires.sum();
  }

  /** The most subscribers that may wait at once ({@code Integer.MAX_VALUE}: unbounded). */
  public int maxPendingAcquires() {
    return config.maxPendingAcquires();
  }

  /** How long the oldest waiting acquire has waited; 0 when none waits. Amortized O(1). */
  public long oldestWaitNanos() {
    return waiters.oldestWaitNanos();
  }

  /** The connect error that keeps the pool down, or null; see {@link Outage}. */
  public @Nullable Throwable downCause() {
    return outage.cause();
  }

  /**
   * How long ago the most recently working idle connection was last seen working (returned after
   * use, validated, opened); -1 when no connection is idle.
   */
  public long freshestIdleNanos() {
    return slots.freshestIdleNanos(now());
  }

  @Override
  public String toString() {
    return "PoolCore[" + name + ", " + stats() + "]";
  }
}
