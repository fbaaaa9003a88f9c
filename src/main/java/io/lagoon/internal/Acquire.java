package io.lagoon.internal;

import io.r2dbc.spi.Connection;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.Disposable;

/**
 * One subscriber's acquire: its subscription and, when it has to wait, its place in the queue.
 *
 * <p>States: {@code NEW -> DONE} (served at once, or failed), {@code NEW -> WAITING -> ASSIGNED ->
 * DONE}, and {@code CANCELLED} or a timeout from any state before {@code DONE}. Every change is a
 * CAS, so exactly one of delivery, cancellation, timeout and pool shutdown decides the outcome.
 * A connection assigned to an acquire that is cancelled or times out before delivery goes back to
 * the pool; once {@code DONE} is set for a delivery, the subscriber owns the connection even if it
 * cancels while {@code onNext} runs (as {@code take(1)} does).
 */
final class Acquire implements Subscription, Runnable {

  static final int NEW = 0;
  static final int WAITING = 1;
  static final int ASSIGNED = 2;
  static final int DONE = 3;
  static final int CANCELLED = 4;

  private static final VarHandle STATE;
  private static final VarHandle TIMER;
  private static final Disposable TIMER_OFF = () -> {};
  private static final long NO_LIMIT_NANOS = PoolConfig.NO_LIMIT.toNanos();

  static {
    try {
      MethodHandles.Lookup lookup = MethodHandles.lookup();
      STATE = lookup.findVarHandle(Acquire.class, "state", int.class);
      TIMER = lookup.findVarHandle(Acquire.class, "timer", Disposable.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  private final PoolCore core;
  private final CoreSubscriber<? super Connection> actual;
  private volatile int state;
  private volatile @Nullable Disposable timer;
  private boolean requested;
  /** When this acquire started to wait; written before it is enqueued. */
  long waitStartNanos;
  /** The pool's connect-failure count when this acquire started to wait (for acquireRetry). */
  long failuresAtStart;
  /** The entry handed over by {@link #assign}; read by {@link #run} on the same thread. */
  private @Nullable PooledEntry assigned;
  /** Where the connection was asked for, with leak detection on; else null. */
  private final @Nullable Throwable site;

  Acquire(PoolCore core, CoreSubscriber<? super Connection> actual, @Nullable Throwable site) {
    this.core = core;
    this.actual = actual;
    this.site = site;
  }

  @Override
  public void request(long n) {
    if (n <= 0) {
      if (STATE.compareAndSet(this, NEW, DONE)) {
        actual.onError(new IllegalArgumentException(
            "Reactive Streams rule 3.9: request must be positive, got " + n));
      }
      return;
    }
    if (!requested) {
      requested = true;
      core.acquire(this);
    }
  }

  @Override
  public void cancel() {
    for (;;) {
      int s = state;
      if (s == DONE || s == CANCELLED) {
        return;
      }
      if (STATE.compareAndSet(this, s, CANCELLED)) {
        disposeTimer();
        core.events().cancelled(this, s != NEW);
        if (s == WAITING) {
          core.waiters().left(true);
        }
        // ASSIGNED: the thread holding the assigned entry sees the CAS fail in run() and returns it.
        return;
      }
    }
  }

  int state() {
    return state;
  }

  /**
   * Fast path: the caller took {@code entry} as lent at {@code now}; delivers it unless this was
   * cancelled.
   */
  boolean deliverNow(PooledEntry entry, long stamp, long now) {
    if (!STATE.compareAndSet(this, NEW, DONE)) {
      return false;
    }
    core.events().acquiredAtOnce();
    actual.onNext(core.handle(entry, stamp, site, now));
    actual.onComplete();
    return true;
  }

  /** NEW -> WAITING, arming the timer for {@code maxAcquireTime}. */
  boolean startWaiting(long now, long timeoutNanos) {
    waitStartNanos = now;
    if (!STATE.compareAndSet(this, NEW, WAITING)) {
      return false;
    }
    armTimer(timeoutNanos);
    return true;
  }

  /**
   * NEW -> ASSIGNED: the fast path took {@code entry} but must validate it first, so the acquire
   * now waits, and its deadline runs.
   */
  boolean assignNow(PooledEntry entry, long now, long timeoutNanos) {
    waitStartNanos = now;
    if (!STATE.compareAndSet(this, NEW, ASSIGNED)) {
      return false;
    }
    armTimer(timeoutNanos);
    return true;
  }

  /** ASSIGNED -> WAITING: its connection failed validation; it goes back to the head. */
  boolean requeue() {
    return STATE.compareAndSet(this, ASSIGNED, WAITING);
  }

  private void armTimer(long timeoutNanos) {
    if (timeoutNanos >= NO_LIMIT_NANOS) {
      return; // maxAcquireTime is "no limit": no timer at all
    }
    try {
      Disposable d = core.scheduler().schedule(this::onTimeout, timeoutNanos, TimeUnit.NANOSECONDS);
      if (!TIMER.compareAndSet(this, null, d)) {
        d.dispose();
      }
    } catch (RejectedExecutionException e) {
      fail(new IllegalStateException("pool '" + core.name() + "': its scheduler rejected the"
          + " acquire timer (was the scheduler disposed?)", e));
    }
  }

  /** WAITING -> ASSIGNED: the caller hands over {@code entry}, which it owns. */
  boolean assign(PooledEntry entry) {
    if (state != WAITING || !STATE.compareAndSet(this, WAITING, ASSIGNED)) {
      return false;
    }
    assigned = entry;
    return true;
  }

  /** Runs on the trampoline after {@link #assign}: validates the entry first if it must. */
  @Override
  public void run() {
    PooledEntry entry = assigned;
    assigned = null;
    if (entry != null) {
      core.dispatch(this, entry);
    }
  }

  /** Delivers an OWNED entry: ASSIGNED -> DONE, or returns the entry if that lost a race. */
  void deliver(PooledEntry entry) {
    if (STATE.compareAndSet(this, ASSIGNED, DONE)) {
      disposeTimer();
      core.events().acquired(this);
      actual.onNext(core.lend(entry, site));
      actual.onComplete();
    } else {
      core.offer(entry);
    }
  }

  /** Fails an ASSIGNED acquire whose connection the caller closed instead (pool closed). */
  void failAssigned(Throwable error) {
    if (STATE.compareAndSet(this, ASSIGNED, DONE)) {
      disposeTimer();
      core.events().acquireFailed(this, error, true);
      actual.onError(error);
    }
  }

  /** Fails the acquire with a connect error once it saw more than acquireRetry of them. */
  boolean failWaiting(Throwable error) {
    if (state != WAITING || !STATE.compareAndSet(this, WAITING, DONE)) {
      return false;
    }
    disposeTimer();
    core.waiters().left(true);
    core.events().acquireFailed(this, error, true);
    actual.onError(error);
    return true;
  }


  /** Fails a NEW or WAITING acquire (pool closed, queue full, scheduler gone). */
  boolean fail(Throwable error) {
    for (;;) {
      int s = state;
      if (s != NEW && s != WAITING) {
        return false;
      }
      if (STATE.compareAndSet(this, s, DONE)) {
        disposeTimer();
        if (s == WAITING) {
          core.waiters().left(false);
        }
        core.events().acquireFailed(this, error, s == WAITING);
        actual.onError(error);
        return true;
      }
    }
  }

  private void onTimeout() {
    for (;;) {
      int s = state;
      if (s != WAITING && s != ASSIGNED) {
        return;
      }
      if (STATE.compareAndSet(this, s, DONE)) {
        if (s == WAITING) {
          core.waiters().left(true);
        }
        core.events().timedOut(this);
        actual.onError(core.timeoutError(this));
        return;
      }
    }
  }

  private void disposeTimer() {
    Disposable d = (Disposable) TIMER.getAndSet(this, TIMER_OFF);
    if (d != null) {
      d.dispose();
    }
  }
}
