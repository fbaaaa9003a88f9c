package io.lagoon.internal;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.R2dbcTimeoutException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.LongAdder;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.Disposable;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Operators;
import reactor.core.publisher.Sinks;
import reactor.util.context.Context;

/**
 * Opens physical connections: for waiters that no connect in flight covers, for fills (the
 * initial fill, {@code warmup()}, soft eviction) and to keep {@code minIdle} idle connections. At
 * most {@code maxConcurrentCreates} connects run at once, each in a reserved slot and bounded by
 * {@code maxCreateConnectionTime}. After a failure, connects back off exponentially with jitter
 * (10 ms doubling up to 500 ms), so a database that is down is not hammered; the first success
 * resets the back-off.
 *
 * <p>The pool is <em>down</em> while the last connect failed and no connection is open. Then
 * acquires fail at once (see {@link PoolCore#acquire}) instead of queueing, and one probe connect
 * at a time, on the back-off schedule, looks for the database whether or not anyone waits; its
 * connection, once open, ends the down state and serves the next acquire.
 */
final class Creator {

  private static final long BACKOFF_MIN_NANOS = TimeUnit.MILLISECONDS.toNanos(10);
  private static final long BACKOFF_MAX_NANOS = TimeUnit.MILLISECONDS.toNanos(500);

  private final PoolCore core;
  private final Lifecycle lifecycle;
  private final AtomicInteger creating = new AtomicInteger();
  private final ConcurrentLinkedQueue<Fill> fills = new ConcurrentLinkedQueue<>();
  private final LongAdder created = new LongAdder();
  private final AtomicLong failures = new AtomicLong();
  private final AtomicInteger failureStreak = new AtomicInteger();
  private final AtomicBoolean retryScheduled = new AtomicBoolean();
  private volatile long retryAtNanos;
  private volatile @Nullable Throwable lastError;
  private volatile long lastErrorNanos;
  private volatile @Nullable Mono<Integer> initialFill;

  Creator(PoolCore core, Lifecycle lifecycle) {
    this.core = core;
    this.lifecycle = lifecycle;
  }

  long created() {
    return created.sum();
  }

  /** Physical connects in flight (bounded by maxConcurrentCreates). */
  int creating() {
    return creating.get();
  }

  long failures() {
    return failures.get();
  }

  /** Connect failures since the last success (0: the last connect succeeded, or none ran yet). */
  int failureStreak() {
    return failureStreak.get();
  }

  /** The last connect error, or null. */
  @Nullable Throwable lastError() {
    return lastError;
  }

  long lastErrorNanos() {
    return lastErrorNanos;
  }

  long retryAtNanos() {
    return retryAtNanos;
  }

  /** The last connect error if it happened at or after {@code sinceNanos}. */
  @Nullable Throwable failureSince(long sinceNanos) {
    Throwable e = lastError;
    return e != null && lastErrorNanos - sinceNanos >= 0 ? e : null;
  }

  /** Starts connects while some demand is uncovered and the limits allow. */
  void createIfNeeded() {
    for (;;) {
      if (core.isClosed()) {
        return;
      }
      int c = creating.get();
      if (c >= core.config().maxConcurrentCreates()) {
        return;
      }
      Fill fill = null;
      if (core.waiters().pending() <= c) {
        fill = nextFill();
        if (fill == null
            && core.slots().idleCount() + lifecycle.revalidating() + c >= core.config().minIdle()
            && !(c == 0 && failureStreak.get() > 0 && !core.slots().hasOpenConnection())) {
          return; // no demand, no fill, minIdle met, and not down (down: one probe connect)
        }
      }
      if (fill == null && inBackoff()) {
        scheduleRetry();
        return;
      }
      if (!creating.compareAndSet(c, c + 1)) {
        continue;
      }
      if (fill != null && !fill.claim()) {
        creating.decrementAndGet();
        continue;
      }
      PooledEntry e = new PooledEntry();
      e.epoch = lifecycle.epoch(); // a connect started before a soft eviction is retired after it
      if (core.slots().reserve(e) < 0) {
        creating.decrementAndGet();
        if (fill != null) {
          fill.finish(false);
          fill.abort();
        }
        // A slot freed between the scan and the decrement would find `creating` still counting
        // this attempt and start nothing: look once more.
        if (!core.slots().hasFree()) {
          return;
        }
        continue;
      }
      if (core.isClosed()) {
        // shutdown() may have found no slot and no connect: it must not see one start now
        creating.decrementAndGet();
        if (fill != null) {
          fill.finish(false);
        }
        core.freeSlot(e);
        return;
      }
      connect(e, fill);
    }
  }

  private @Nullable Fill nextFill() {
    settleFills();
    return fills.peek();
  }

  /**
   * Ends the fills that need no more connects: those that started all theirs, and those whose
   * target the pool has reached anyway, with connections opened for waiters (a fill yields to
   * waiters, so under load it may never start its own).
   */
  private void settleFills() {
    if (fills.isEmpty()) {
      return;
    }
    int allocated = core.slots().allocated();
    for (Fill f : fills) {
      if (!f.wantsMore() || allocated >= f.target) {
        fills.remove(f);
        f.abort();
      }
    }
  }

  private boolean inBackoff() {
    return failureStreak.get() > 0 && retryAtNanos - core.now() > 0;
  }

  private void scheduleRetry() {
    if (retryScheduled.compareAndSet(false, true)) {
      long delay = Math.max(0, retryAtNanos - core.now());
      core.scheduler().schedule(() -> {
        retryScheduled.set(false);
        createIfNeeded();
      }, delay, TimeUnit.NANOSECONDS);
    }
  }

  private void connect(PooledEntry e, @Nullable Fill fill) {
    core.events().connectStarted(e);
    Mono<? extends Connection> connect;
    try {
      connect = Mono.from(core.config().factory().create());
    } catch (Throwable t) {
      onFailed(e, fill, t);
      return;
    }
    connect.subscribe(new Connect(e, fill));
  }

  /** The driver delivered a connection: run postAllocate, then publish it. */
  private void onConnected(PooledEntry e, Connection c, @Nullable Fill fill) {
    lifecycle.postAllocate(c).then(lifecycle.captureSession(e, c)).subscribe(null, error -> {
      closeQuietly(c);
      onFailed(e, fill, error);
    }, () -> publish(e, c, fill));
  }

  private void publish(PooledEntry e, Connection c, @Nullable Fill fill) {
    long now = core.now();
    lifecycle.opened(e, now);
    e.connection = c;
    created.increment();
    core.events().created(e);
    failureStreak.set(0);
    if (fill != null) {
      fill.finish(true);
    }
    // Deliveries made by offer() wait until this bookkeeping is done.
    Trampoline.hold(() -> {
      core.offer(e, now); // at the instant its lifetime began: see PoolCore.offer
      creating.decrementAndGet();
      settleFills();
      createIfNeeded();
      core.checkTerminatedIfClosing();
    });
  }

  private void onFailed(PooledEntry e, @Nullable Fill fill, Throwable error) {
    onFailed(e, fill, error, true);
  }

  /** Books a failed attempt; {@code freeSlot} false when the slot must outlive the attempt. */
  private void onFailed(PooledEntry e, @Nullable Fill fill, Throwable error, boolean freeSlot) {
    long now = core.now();
    lastError = error;
    lastErrorNanos = now;
    long failureCount = failures.incrementAndGet();
    core.events().connectFailed(e, error);
    int streak = failureStreak.incrementAndGet();
    retryAtNanos = now + backoffNanos(streak);
    if (fill != null) {
      fill.finish(false);
      fill.abort(); // the database refuses: a fill reports what it opened instead of insisting
    }
    creating.decrementAndGet();
    if (!core.slots().hasOpenConnection()) {
      core.outage().failWaitersAfterRetries(failureCount); // down: nothing open to wait for
    }
    if (freeSlot) {
      core.freeSlot(e);
    }
  }

  static long backoffNanos(int streak) {
    long ceiling = BACKOFF_MIN_NANOS << Math.min(streak - 1, 20);
    ceiling = Math.min(Math.max(ceiling, BACKOFF_MIN_NANOS), BACKOFF_MAX_NANOS);
    // "Equal jitter": between half the ceiling and the ceiling, so pools that failed together do
    // not retry together.
    return ceiling / 2 + ThreadLocalRandom.current().nextLong(ceiling / 2 + 1);
  }

  // ---------------------------------------------------------------- fills

  /** Opens connections until {@code target} are allocated; emits how many this call opened. */
  Mono<Integer> fill(int target) {
    return Mono.defer(() -> {
      int need = target - core.slots().allocated();
      if (need <= 0 || core.isClosed()) {
        return Mono.just(0);
      }
      Fill f = new Fill(target, need);
      fills.add(f);
      createIfNeeded();
      return f.result.asMono();
    });
  }

  void startInitialFill(int initialSize) {
    Mono<Integer> m = fill(initialSize).cache();
    initialFill = m;
    m.subscribe(n -> {}, err -> {});
  }

  Mono<Integer> warmup(int initialSize) {
    Mono<Integer> initial = initialFill;
    Mono<Integer> topUp = fill(initialSize);
    return initial == null ? topUp : initial.onErrorReturn(0).then(topUp);
  }

  void shutdown() {
    Fill f;
    while ((f = fills.poll()) != null) {
      f.abort();
    }
  }

  /** One fill request: how many connects it may still start, how many run, how many opened. */
  private static final class Fill {
    /** The allocated count at which this fill is done, whoever opened the connections. */
    final int target;
    private final AtomicInteger toStart;
    private final AtomicInteger running = new AtomicInteger();
    private final AtomicInteger opened = new AtomicInteger();
    private final AtomicBoolean finished = new AtomicBoolean();
    final Sinks.One<Integer> result = Sinks.one();

    Fill(int target, int count) {
      this.target = target;
      toStart = new AtomicInteger(count);
    }

    boolean wantsMore() {
      return toStart.get() > 0;
    }

    boolean claim() {
      running.incrementAndGet();
      int n;
      do {
        n = toStart.get();
        if (n <= 0) {
          running.decrementAndGet();
          maybeFinish();
          return false;
        }
      } while (!toStart.compareAndSet(n, n - 1));
      return true;
    }

    void finish(boolean opened) {
      if (opened) {
        this.opened.incrementAndGet();
      }
      running.decrementAndGet();
      maybeFinish();
    }

    void abort() {
      toStart.set(0);
      maybeFinish();
    }

    private void maybeFinish() {
      if (toStart.get() <= 0 && running.get() == 0 && finished.compareAndSet(false, true)) {
        result.tryEmitValue(opened.get());
      }
    }
  }

  // ---------------------------------------------------------------- one connect

  private static void closeQuietly(Connection c) {
    Mono.from(c.close()).subscribe(null, ignored -> {});
  }

  /**
   * Subscribes to the driver's create(), bounded by maxCreateConnectionTime. A connection that
   * arrives after the attempt timed out is closed: both when the driver still emits it, and when a
   * Reactor operator inside the driver drops it after the cancel (the discard hook in this
   * subscriber's context hands it back). Until such a connection is closed, or maxCloseTime passed
   * without one, the timed-out attempt keeps its slot, so that even then no more than maxSize
   * connections exist at once.
   */
  private final class Connect implements CoreSubscriber<Connection> {

    private static final VarHandle DONE;
    private static final VarHandle SLOT_FREED;

    static {
      try {
        MethodHandles.Lookup lookup = MethodHandles.lookup();
        DONE = lookup.findVarHandle(Connect.class, "done", boolean.class);
        SLOT_FREED = lookup.findVarHandle(Connect.class, "slotFreed", boolean.class);
      } catch (ReflectiveOperationException ex) {
        throw new ExceptionInInitializerError(ex);
      }
    }

    private volatile boolean slotFreed;
    private volatile boolean timedOut;
    /** The connection closeLate took care of: a driver may both emit and discard it. */
    private final AtomicReference<@Nullable Connection> late = new AtomicReference<>();

    private final PooledEntry entry;
    private final @Nullable Fill fill;
    private volatile boolean done;
    private volatile @Nullable Subscription subscription;
    private volatile @Nullable Disposable timer;
    private final Context context = Operators.enableOnDiscard(Context.empty(), dropped -> {
      if (dropped instanceof Connection c) {
        closeLate(c);
      }
    });

    Connect(PooledEntry entry, @Nullable Fill fill) {
      this.entry = entry;
      this.fill = fill;
    }

    @Override
    public Context currentContext() {
      return context;
    }

    private boolean finish() {
      if (!DONE.compareAndSet(this, false, true)) {
        return false;
      }
      Disposable t = timer;
      if (t != null) {
        t.dispose();
      }
      return true;
    }

    @Override
    public void onSubscribe(Subscription s) {
      subscription = s;
      timer = Timers.after(core.scheduler(), core.config().maxCreateConnectionTime(),
          this::onTimeout);
      s.request(Long.MAX_VALUE);
    }

    @Override
    public void onNext(Connection c) {
      if (finish()) {
        onConnected(entry, c, fill);
      } else {
        closeLate(c); // after the attempt timed out: the pool does not count it, it must not live
      }
    }

    @Override
    public void onError(Throwable t) {
      if (finish()) {
        onFailed(entry, fill, t);
      }
    }

    @Override
    public void onComplete() {
      if (finish()) {
        onFailed(entry, fill, new IllegalStateException(
            "ConnectionFactory.create() completed without emitting a connection"));
      }
    }

    private void onTimeout() {
      if (finish()) {
        timedOut = true;
        Subscription s = subscription;
        if (s != null) {
          s.cancel();
        }
        onFailed(entry, fill, new R2dbcTimeoutException("pool '" + core.name()
            + "': opening a connection took longer than maxCreateConnectionTime "
            + core.config().maxCreateConnectionTime()), false);
        Timers.after(core.scheduler(), core.config().maxCloseTime(), this::freeSlot);
        createIfNeeded(); // other free slots may serve the waiters meanwhile (after back-off)
      }
    }

    /** Closes a connection the pool will not use; a timed-out attempt's slot waits for that. */
    private void closeLate(Connection c) {
      if (late.compareAndExchange(null, c) == c) {
        return; // already closing it
      }
      Timers.within(Mono.defer(() -> Mono.from(c.close())), core.config().maxCloseTime(),
              core.scheduler())
          .onErrorResume(err -> Mono.empty())
          .doFinally(signal -> {
            if (timedOut) {
              freeSlot();
            }
          })
          .subscribe();
    }

    private void freeSlot() {
      if (SLOT_FREED.compareAndSet(this, false, true)) {
        core.freeSlot(entry);
      }
    }
  }
}
