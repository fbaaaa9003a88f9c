package io.lagoon.internal;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolExhaustedException;
import io.lagoon.PoolListener;
import io.lagoon.PoolListener.AcquireOutcome;
import io.lagoon.PoolListener.EvictionReason;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import reactor.core.Disposable;
import reactor.core.Exceptions;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * Delivers a pool's events to its {@link PoolListener}s. The core calls one method per event, each
 * from a single line at the place where the event happens; this class decides whether anyone
 * listens (one volatile read of the listener array, empty when nobody does), reads the clock only
 * when someone does, and shields the pool from listeners that throw (caught, logged once per
 * listener).
 *
 * <p>Listeners are added and removed copy-on-write; an event sees the array as it was when the
 * event started. After the pool terminated (closed, every connection closed) the listeners are
 * detached and no event is delivered any more.
 */
public final class PoolEvents {

  /** A timestamp field that holds no time (the pool's clock may legitimately read 0). */
  static final long NO_TIME = Long.MIN_VALUE;

  private static final Logger LOG = Loggers.getLogger(PoolEvents.class);
  private static final Registered[] NONE = {};

  private final PoolCore core;
  private volatile Registered[] listeners = NONE;
  private boolean terminated; // guarded by this

  PoolEvents(PoolCore core) {
    this.core = core;
  }

  /** One attached listener and whether its first failure was logged. */
  private static final class Registered {
    final PoolListener listener;
    final AtomicBoolean failureLogged = new AtomicBoolean();

    Registered(PoolListener listener) {
      this.listener = listener;
    }
  }

  // ---------------------------------------------------------------- registration

  /**
   * Attaches {@code listener} to {@code pool}: calls {@link PoolListener#onAttach}, then delivers
   * events until the returned handle is disposed or the pool terminates. Adding the same listener
   * twice attaches it twice. If {@code onAttach} throws, the listener is not attached and the
   * exception propagates: it is a configuration error, and the pool has not relied on it yet.
   */
  public Disposable add(ConnectionPool pool, PoolListener listener) {
    Objects.requireNonNull(listener, "listener must not be null");
    Registered r = new Registered(listener);
    listener.onAttach(pool);
    boolean added;
    synchronized (this) {
      added = !terminated;
      if (added) {
        Registered[] now = listeners;
        Registered[] next = Arrays.copyOf(now, now.length + 1);
        next[now.length] = r;
        listeners = next;
      }
    }
    if (!added) {
      call(r, PoolListener::onDetach); // the pool is gone already: nothing will follow
      return () -> {};
    }
    return new Disposable() {
      private final AtomicBoolean disposed = new AtomicBoolean();

      @Override
      public void dispose() {
        if (disposed.compareAndSet(false, true) && remove(r)) {
          call(r, PoolListener::onDetach);
        }
      }

      @Override
      public boolean isDisposed() {
        return disposed.get();
      }
    };
  }

  private synchronized boolean remove(Registered r) {
    Registered[] now = listeners;
    for (int i = 0; i < now.length; i++) {
      if (now[i] == r) {
        Registered[] next = new Registered[now.length - 1];
        System.arraycopy(now, 0, next, 0, i);
        System.arraycopy(now, i + 1, next, i, now.length - i - 1);
        listeners = next;
        return true;
      }
    }
    return false; // detached by termination meanwhile
  }

  /** Whether any listener is attached. */
  public boolean active() {
    return listeners.length != 0;
  }

  // ---------------------------------------------------------------- acquire

  /** The fast path lent an idle connection at once. */
  void acquiredAtOnce() {
    if (listeners.length != 0) {
      acquireEnded(AcquireOutcome.SUCCESS, NO_TIME);
    }
  }

  /** A connection was delivered to an acquire that waited since {@code a.waitStartNanos}. */
  void acquired(Acquire a) {
    if (listeners.length != 0) {
      acquireEnded(AcquireOutcome.SUCCESS, a.waitStartNanos);
    }
  }

  void timedOut(Acquire a) {
    if (listeners.length != 0) {
      acquireEnded(AcquireOutcome.TIMEOUT, a.waitStartNanos);
    }
  }

  /** {@code waited}: whether the acquire had started waiting (its start time is set). */
  void cancelled(Acquire a, boolean waited) {
    if (listeners.length != 0) {
      acquireEnded(AcquireOutcome.CANCELLED, waited ? a.waitStartNanos : NO_TIME);
    }
  }

  /** An acquire failed with {@code error}; {@code waited} as for {@link #cancelled}. */
  void acquireFailed(Acquire a, Throwable error, boolean waited) {
    if (listeners.length != 0) {
      acquireEnded(error instanceof PoolExhaustedException
          ? AcquireOutcome.REJECTED : AcquireOutcome.FAILED, waited ? a.waitStartNanos : NO_TIME);
    }
  }

  private void acquireEnded(AcquireOutcome outcome, long startNanos) {
    long wait = startNanos == NO_TIME ? 0 : Math.max(0, core.now() - startNanos);
    for (Registered r : listeners) {
      try {
        r.listener.onAcquire(outcome, wait);
      } catch (Throwable t) {
        failed(r, t);
      }
    }
  }

  // ---------------------------------------------------------------- lend and return

  /**
   * A lend: stamps the entry with the lend time when someone listens. {@code now} is the clock
   * reading the fast path took as it took the entry (a few instructions earlier), else {@link
   * #NO_TIME}: then the clock is read here, and only if someone listens.
   */
  void lent(PooledEntry e, long now) {
    if (listeners.length == 0) {
      e.lentAtNanos = NO_TIME;
      return;
    }
    e.lentAtNanos = now != NO_TIME ? now : core.now();
    for (Registered r : listeners) {
      try {
        r.listener.onLend();
      } catch (Throwable t) {
        failed(r, t);
      }
    }
  }

  /** The lend that began at {@code since} (or {@link #NO_TIME}) ended at {@code now}. */
  void returned(long since, long now) {
    if (listeners.length != 0 && since != NO_TIME) {
      long usage = Math.max(0, now - since);
      for (Registered r : listeners) {
        try {
          r.listener.onReturn(usage);
        } catch (Throwable t) {
          failed(r, t);
        }
      }
    }
  }

  /** A lend has lasted {@code lentNanos}, longer than leakDetectionThreshold. */
  void leak(long lentNanos) {
    if (listeners.length != 0) {
      emit(l -> l.onLeak(lentNanos));
    }
  }

  // ---------------------------------------------------------------- connects

  /** A connect starts for {@code e}; one clock read per connect, listened to or not. */
  void connectStarted(PooledEntry e) {
    e.createStartNanos = core.now();
  }

  /** The entry's connection is open and published. */
  void created(PooledEntry e) {
    if (listeners.length != 0) {
      long nanos = Math.max(0, core.now() - e.createStartNanos);
      emit(l -> l.onCreate(true, nanos));
    }
  }

  /** The entry's connect failed with {@code error}. */
  void connectFailed(PooledEntry e, Throwable error) {
    if (listeners.length != 0) {
      long nanos = Math.max(0, core.now() - e.createStartNanos);
      emit(l -> {
        l.onCreate(false, nanos);
        l.onConnectFailure(error);
      });
    }
  }

  // ---------------------------------------------------------------- eviction and shutdown

  /**
   * The pool starts closing the entry's physical connection. The reason is the one its caller
   * noted in {@code e.evictReason}, else what the entry's state says: broken, the pool closing, a
   * soft eviction, the end of its lifetime; else it was idle too long.
   */
  void evicted(PooledEntry e) {
    if (listeners.length == 0 || e.connection == null) {
      return;
    }
    EvictionReason noted = e.evictReason;
    EvictionReason reason = noted != null ? noted
        : e.broken ? EvictionReason.BROKEN
        : core.isClosed() ? EvictionReason.CLOSED
        : e.epoch != core.lifecycle().epoch() ? EvictionReason.SOFT
        : core.now() - e.expiresAtNanos >= 0 ? EvictionReason.LIFETIME
        : EvictionReason.IDLE;
    emit(l -> l.onEvict(reason));
  }

  /** The pool closed and holds no connection any more: detach every listener, once. */
  void terminated() {
    Registered[] detached;
    synchronized (this) {
      if (terminated) {
        return;
      }
      terminated = true;
      detached = listeners;
      listeners = NONE;
    }
    for (Registered r : detached) {
      call(r, PoolListener::onDetach);
    }
  }

  // ---------------------------------------------------------------- delivery

  /** For the rarer events: a lambda per event is fine there; the hot ones loop inline. */
  private void emit(Consumer<PoolListener> event) {
    for (Registered r : listeners) {
      call(r, event);
    }
  }

  private void call(Registered r, Consumer<PoolListener> event) {
    try {
      event.accept(r.listener);
    } catch (Throwable t) {
      failed(r, t);
    }
  }

  private void failed(Registered r, Throwable t) {
    Exceptions.throwIfJvmFatal(t);
    if (r.failureLogged.compareAndSet(false, true)) {
      LOG.warn("Pool '{}': listener {} threw; the pool ignores this and further exceptions from"
          + " it (logged at debug level)", core.name(), r.listener, t);
    } else if (LOG.isDebugEnabled()) {
      LOG.debug("Pool '{}': listener {} threw again", core.name(), r.listener, t);
    }
  }
}
