package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Queue;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * The reliability scenarios' load: {@code loops} concurrent loops (64 by default), each repeating
 * acquire → work ({@code SELECT 1} by default) → close through a pool, and pausing {@code
 * pauseAfterFailure} (50 ms by default) after a failed operation, as an application retry would.
 * Non-blocking: every loop is a reactive chain, nothing waits on a thread.
 *
 * <p>What it counts, all readable at any time from any thread:
 *
 * <ul>
 *   <li>{@link #ops()} operations that succeeded, {@link #failures()} that failed, by cause in
 *       {@link #failuresByCause()}, the first failures with their timing in {@link #failureLog()};
 *   <li>{@link #holding()}: operations that hold a connection, from its delivery until its {@code
 *       close()} completed. A connection handed from one loop straight to another is counted by
 *       both for a moment (the pool delivers to the next loop inside the first one's close), never
 *       by none; {@link #active()}: operations started and not yet finished;
 *   <li>latencies of successful operations (acquire subscription to close completion) per second
 *       of the run ({@link #percentileMicros}) and the operations per second ({@link
 *       #opsPerSecond()});
 *   <li>successes per 10 ms over the first {@value #FINE_SECONDS} s, for what happened around an
 *       instant ({@link System#nanoTime()}): {@link #opsPerSecondBetween}, {@link
 *       #firstSuccessAfter}, {@link #throughputRestoredAfter}, {@link #failuresBetween}.
 * </ul>
 *
 * <p>Usage: {@code LoadLoops loops = LoadLoops.builder(pool).start(); ... loops.stop(bound);}.
 * Thread-safe.
 */
public final class LoadLoops {

  /** {@code SELECT 1}, its row read. */
  public static final Function<Connection, Publisher<?>> SELECT_ONE = c ->
      Flux.from(c.createStatement("SELECT 1").execute())
          .flatMap(r -> r.map((row, meta) -> row.get(0)));

  /**
   * One failed operation: when it started and ended ({@link System#nanoTime()}), whether the
   * acquire failed (no connection was delivered), how long the acquire took (until the delivery,
   * or until the failure when it failed), and why.
   */
  public record Failure(int loop, long startNanos, long endNanos, boolean acquireFailed,
      long acquireNanos, Throwable error) {
    /** How long the operation took before it failed. */
    public Duration took() {
      return Duration.ofNanos(endNanos - startNanos);
    }
  }

  /** The counters at one instant (read one after the other, not atomically together). */
  public record Snapshot(long nanos, long ops, long failures, int holding, int active) {}

  private final ConnectionFactory pool;
  private final int loops;
  private final Duration pause;
  private final Function<? super Connection, ? extends Publisher<?>> work;
  private final @Nullable Duration workTimeout;
  private final Scheduler pauseScheduler;
  private final Scheduler operationsOn;
  private final int maxLoggedFailures;

  private final long startNanos = System.nanoTime();
  private volatile boolean stopping;
  private final AtomicInteger running = new AtomicInteger();
  private final Sinks.Empty<Void> stopped = Sinks.empty();

  private final LongAdder ops = new LongAdder();
  private final LongAdder failures = new LongAdder();
  private final AtomicInteger holding = new AtomicInteger();
  private final AtomicInteger active = new AtomicInteger();
  private final AtomicInteger paused = new AtomicInteger();
  private final Map<String, LongAdder> causes = new ConcurrentHashMap<>();
  private final Queue<Failure> failureLog = new ConcurrentLinkedQueue<>();
  private final AtomicInteger logged = new AtomicInteger();
  private final AtomicReferenceArray<Histogram> perSecond = new AtomicReferenceArray<>(MAX_SECONDS);
  private final AtomicLongArray okByTenMillis = new AtomicLongArray(FINE_BUCKETS);

  static final int MAX_SECONDS = 7_200;
  /** How long the 10 ms counts of successes reach; later successes count in the last one. */
  static final int FINE_SECONDS = 300;
  private static final long FINE_NANOS = TimeUnit.MILLISECONDS.toNanos(10);
  private static final int FINE_BUCKETS = FINE_SECONDS * 100;

  private LoadLoops(Builder b) {
    this.pool = b.pool;
    this.loops = b.loops;
    this.pause = b.pause;
    this.work = b.work;
    this.workTimeout = b.workTimeout;
    this.pauseScheduler = b.pauseScheduler;
    this.operationsOn = b.operationsOn;
    this.maxLoggedFailures = b.maxLoggedFailures;
  }

  /** A builder of loops over {@code pool} (usually a {@code ConnectionPool}). */
  public static Builder builder(ConnectionFactory pool) {
    return new Builder(pool);
  }

  /** Settings of the loops; defaults as the reliability scenarios use them. */
  public static final class Builder {
    private final ConnectionFactory pool;
    private int loops = 64;
    private Duration pause = Duration.ofMillis(50);
    private Function<? super Connection, ? extends Publisher<?>> work = SELECT_ONE;
    private @Nullable Duration workTimeout;
    private Scheduler pauseScheduler = Schedulers.parallel();
    private Scheduler operationsOn;
    private int maxLoggedFailures = 10_000;

    private Builder(ConnectionFactory pool) {
      this.pool = Objects.requireNonNull(pool, "pool");
    }

    /** Concurrent loops; 64 by default. */
    public Builder loops(int loops) {
      if (loops < 1) {
        throw new IllegalArgumentException("loops (" + loops + ") must be >= 1");
      }
      this.loops = loops;
      return this;
    }

    /** The pause after a failed operation; 50 ms by default. */
    public Builder pauseAfterFailure(Duration pause) {
      if (pause.isNegative()) {
        throw new IllegalArgumentException("pauseAfterFailure (" + pause + ") must not be negative");
      }
      this.pause = pause;
      return this;
    }

    /**
     * What each operation does with its connection; {@link #SELECT_ONE} by default. An error it
     * signals counts as a failed operation; the connection is closed either way.
     */
    public Builder work(Function<? super Connection, ? extends Publisher<?>> work) {
      this.work = Objects.requireNonNull(work, "work");
      return this;
    }

    /**
     * The application's own bound on its work (not on the acquire): work still running after
     * {@code timeout} fails with a {@link java.util.concurrent.TimeoutException}, and its
     * connection is closed. None by default.
     */
    public Builder workTimeout(Duration timeout) {
      if (timeout.isNegative() || timeout.isZero()) {
        throw new IllegalArgumentException("workTimeout (" + timeout + ") must be positive");
      }
      this.workTimeout = timeout;
      return this;
    }

    /** Where the pauses run; {@code Schedulers.parallel()} by default. */
    public Builder pauseScheduler(Scheduler scheduler) {
      this.pauseScheduler = Objects.requireNonNull(scheduler, "scheduler");
      return this;
    }

    /**
     * Starts every operation as a task on {@code scheduler}. Needed with a driver that completes
     * synchronously (the test driver without latency): each loop would otherwise repeat on the
     * thread that started it and never let go. By default an operation starts on the thread where
     * the previous one ended, as an application's would.
     */
    public Builder operationsOn(Scheduler scheduler) {
      this.operationsOn = Objects.requireNonNull(scheduler, "scheduler");
      return this;
    }

    /** How many failures {@link #failureLog()} keeps (the first ones); 10,000 by default. */
    public Builder maxLoggedFailures(int max) {
      if (max < 0) {
        throw new IllegalArgumentException("maxLoggedFailures (" + max + ") must be >= 0");
      }
      this.maxLoggedFailures = max;
      return this;
    }

    /** Starts the loops now. */
    public LoadLoops start() {
      LoadLoops l = new LoadLoops(this);
      l.startLoops();
      return l;
    }
  }

  private void startLoops() {
    running.set(loops);
    for (int i = 0; i < loops; i++) {
      int loop = i;
      Mono<Void> op = Mono.defer(() -> operation(loop));
      (operationsOn == null ? op : op.subscribeOn(operationsOn))
          .repeat(() -> !stopping)
          .subscribe(null, error -> loopEnded(), this::loopEnded);
    }
  }

  private void loopEnded() {
    if (running.decrementAndGet() == 0) {
      stopped.tryEmitEmpty();
    }
  }

  /** One acquire → work → close; never errors: a failure is recorded, then paused for. */
  private Mono<Void> operation(int loop) {
    long start = System.nanoTime();
    long[] acquiredAt = {0};
    active.incrementAndGet();
    return Mono.usingWhen(
            Mono.from(pool.create()).doOnNext(c -> {
              acquiredAt[0] = System.nanoTime();
              holding.incrementAndGet();
            }),
            c -> {
              Mono<Void> w = Flux.from(work.apply(c)).then();
              return workTimeout == null ? w : w.timeout(workTimeout);
            },
            this::close,
            (c, error) -> close(c),
            this::close)
        .then(Mono.fromRunnable(() -> {
          active.decrementAndGet();
          succeeded(start, System.nanoTime());
        }))
        .onErrorResume(error -> {
          long end = System.nanoTime();
          active.decrementAndGet();
          boolean acquireFailed = acquiredAt[0] == 0;
          failed(new Failure(loop, start, end, acquireFailed,
              (acquireFailed ? end : acquiredAt[0]) - start, error));
          if (pause.isZero()) {
            return Mono.empty();
          }
          paused.incrementAndGet();
          return Mono.delay(pause, pauseScheduler).doFinally(s -> paused.decrementAndGet()).then();
        })
        .then();
  }

  /** Closes; no longer holding once the close ended, before the operation completes. */
  private Mono<Void> close(Connection c) {
    return Mono.defer(() -> {
      AtomicBoolean once = new AtomicBoolean();
      Runnable released = () -> {
        if (once.compareAndSet(false, true)) {
          holding.decrementAndGet();
        }
      };
      return Mono.from(c.close()).doOnTerminate(released).doOnCancel(released);
    });
  }

  private void succeeded(long start, long end) {
    ops.increment();
    histogram(second(end)).record((end - start) / 1_000);
    okByTenMillis.incrementAndGet(fine(end));
  }

  private void failed(Failure f) {
    failures.increment();
    causes.computeIfAbsent(causeKey(f.error()), k -> new LongAdder()).increment();
    if (logged.incrementAndGet() <= maxLoggedFailures) {
      failureLog.add(f);
    }
  }

  /** The error's simple class name, and its cause's when it has one: {@code A(cause: B)}. */
  static String causeKey(Throwable error) {
    Throwable cause = error.getCause();
    String key = error.getClass().getSimpleName();
    return cause == null || cause == error ? key
        : key + "(cause: " + cause.getClass().getSimpleName() + ")";
  }

  private int second(long nanos) {
    long s = (nanos - startNanos) / 1_000_000_000L;
    return (int) Math.max(0, Math.min(MAX_SECONDS - 1, s));
  }

  private int fine(long nanos) {
    long b = (nanos - startNanos) / FINE_NANOS;
    return (int) Math.max(0, Math.min(FINE_BUCKETS - 1, b));
  }

  private Histogram histogram(int second) {
    Histogram h = perSecond.get(second);
    if (h == null) {
      h = new Histogram();
      if (!perSecond.compareAndSet(second, null, h)) {
        h = perSecond.get(second);
      }
    }
    return h;
  }

  // ---------------------------------------------------------------- stopping

  /** Lets every loop finish its current operation (or pause), then stop. Lazy: stops when subscribed. */
  public Mono<Void> stopping() {
    return Mono.defer(() -> {
      stopping = true;
      return stopped.asMono();
    });
  }

  /**
   * Stops the loops and waits for them, at most {@code bound}; throws if they did not stop in
   * time. Blocks: call it from a test thread.
   */
  public LoadLoops stop(Duration bound) {
    stopping().block(bound);
    return this;
  }

  // ---------------------------------------------------------------- figures

  /** When the loops started ({@link System#nanoTime()}). */
  public long startNanos() {
    return startNanos;
  }

  public int loops() {
    return loops;
  }

  /** Operations that succeeded. */
  public long ops() {
    return ops.sum();
  }

  /** Operations that failed. */
  public long failures() {
    return failures.sum();
  }

  /** Operations holding a connection: delivered, close not yet completed. */
  public int holding() {
    return holding.get();
  }

  /** Operations started and not finished (waiting for a connection, or holding one). */
  public int active() {
    return active.get();
  }

  /** Loops in their pause after a failure. */
  public int paused() {
    return paused.get();
  }

  public Snapshot snapshot() {
    return new Snapshot(System.nanoTime(), ops(), failures(), holding(), active());
  }

  /** Failed operations by {@link #causeKey cause}, sorted by key. */
  public Map<String, Long> failuresByCause() {
    Map<String, Long> m = new TreeMap<>();
    causes.forEach((k, v) -> m.put(k, v.sum()));
    return m;
  }

  /** The first failures (up to the builder's {@code maxLoggedFailures}), in no strict order. */
  public List<Failure> failureLog() {
    return new ArrayList<>(failureLog);
  }

  /** Successful operations in each whole second since the start (the last one may be partial). */
  public List<Long> opsPerSecond() {
    int last = second(System.nanoTime());
    List<Long> out = new ArrayList<>(last + 1);
    for (int s = 0; s <= last; s++) {
      Histogram h = perSecond.get(s);
      out.add(h == null ? 0 : h.count());
    }
    return out;
  }

  /** Successful operations that ended in seconds [fromSecond, toSecond) since the start. */
  public long opsBetween(int fromSecond, int toSecond) {
    return merged(fromSecond, toSecond).count();
  }

  /**
   * The {@code quantile} (0..1) of the latency of successful operations that ended in seconds
   * [fromSecond, toSecond) since the start, in microseconds (about 3 % precision); -1 if none.
   */
  public long percentileMicros(double quantile, int fromSecond, int toSecond) {
    return merged(fromSecond, toSecond).percentile(quantile);
  }

  /** {@link #percentileMicros} over the whole run. */
  public long percentileMicros(double quantile) {
    return percentileMicros(quantile, 0, MAX_SECONDS);
  }

  /** Whole seconds since the start. */
  public int elapsedSeconds() {
    return second(System.nanoTime());
  }

  private Histogram merged(int from, int to) {
    Histogram m = new Histogram();
    for (int s = Math.max(0, from); s < Math.min(to, MAX_SECONDS); s++) {
      Histogram h = perSecond.get(s);
      if (h != null) {
        m.add(h);
      }
    }
    return m;
  }

  // ---------------------------------------------------------------- around an instant (10 ms)

  /** Successful operations per second among those that ended in [fromNanos, toNanos). */
  public double opsPerSecondBetween(long fromNanos, long toNanos) {
    long n = 0;
    for (int b = fine(fromNanos); b < fine(toNanos); b++) {
      n += okByTenMillis.get(b);
    }
    return n * 1e9 / Math.max(1, toNanos - fromNanos);
  }

  /** The logged failures that ended in [fromNanos, toNanos). */
  public List<Failure> failuresBetween(long fromNanos, long toNanos) {
    List<Failure> in = new ArrayList<>();
    for (Failure f : failureLog) {
      if (f.endNanos() - fromNanos >= 0 && f.endNanos() - toNanos < 0) {
        in.add(f);
      }
    }
    return in;
  }

  /**
   * The end of the first 10 ms at or after {@code fromNanos} in which an operation succeeded, or
   * -1.
   */
  public long firstSuccessAfter(long fromNanos) {
    for (int b = fine(fromNanos); b < FINE_BUCKETS; b++) {
      if (okByTenMillis.get(b) > 0) {
        return startNanos + (b + 1) * FINE_NANOS;
      }
    }
    return -1;
  }

  /**
   * The end of the first 100 ms window at or after {@code fromNanos} whose successes reach {@code
   * fraction} of {@code perSecond}, or -1 if none has yet.
   */
  public long throughputRestoredAfter(long fromNanos, double perSecond, double fraction) {
    int window = 10; // 10 ms each: 100 ms
    long need = (long) (perSecond * fraction / 10);
    for (int b = fine(fromNanos); b + window < FINE_BUCKETS; b++) {
      long n = 0;
      for (int i = b; i < b + window; i++) {
        n += okByTenMillis.get(i);
      }
      if (n >= need && need > 0) {
        return startNanos + (b + window) * FINE_NANOS;
      }
      if (startNanos + (b + window) * FINE_NANOS - System.nanoTime() > 0) {
        return -1;
      }
    }
    return -1;
  }

  /** Successes in each of {@code count} 100 ms windows from {@code fromNanos} on. */
  public List<Long> per100msAfter(long fromNanos, int count) {
    List<Long> out = new ArrayList<>();
    int b = fine(fromNanos);
    for (int w = 0; w < count && b + 10 <= FINE_BUCKETS; w++, b += 10) {
      long n = 0;
      for (int i = b; i < b + 10; i++) {
        n += okByTenMillis.get(i);
      }
      out.add(n);
    }
    return out;
  }

  /** Nanoseconds in whole milliseconds. */
  public static long ms(long nanos) {
    return TimeUnit.NANOSECONDS.toMillis(nanos);
  }

  /** ops, failures by cause, p50/p99/max: for a scenario's line of figures. */
  public String summary() {
    return "ops=" + ops() + ", failures=" + failures() + " " + failuresByCause()
        + ", p50=" + percentileMicros(0.50) + "us, p99=" + percentileMicros(0.99) + "us, max="
        + percentileMicros(1.0) + "us";
  }

  @Override
  public String toString() {
    return "LoadLoops[loops=" + loops + ", holding=" + holding() + ", active=" + active()
        + ", paused=" + paused() + ", " + summary() + "]";
  }

  /**
   * A lock-free log-linear histogram of microseconds: exact below 64, then 32 buckets per power
   * of two (about 3 % wide). A percentile is reported as its bucket's upper bound.
   */
  static final class Histogram {
    private static final int LINEAR = 64;
    private static final int SUB = 32;
    private static final int SUB_BITS = 5;
    private static final int FIRST_EXP = 6; // 2^6 = LINEAR
    private static final int BUCKETS = LINEAR + (63 - FIRST_EXP) * SUB;

    private final AtomicLongArray counts = new AtomicLongArray(BUCKETS);
    private final LongAdder total = new LongAdder();

    void record(long micros) {
      counts.incrementAndGet(index(Math.max(0, micros)));
      total.increment();
    }

    static int index(long v) {
      if (v < LINEAR) {
        return (int) v;
      }
      int exp = 63 - Long.numberOfLeadingZeros(v);
      int sub = (int) ((v >>> (exp - SUB_BITS)) & (SUB - 1));
      return LINEAR + (exp - FIRST_EXP) * SUB + sub;
    }

    /** The largest value that falls into bucket {@code i}. */
    static long upperBound(int i) {
      if (i < LINEAR) {
        return i;
      }
      int exp = (i - LINEAR) / SUB + FIRST_EXP;
      int sub = (i - LINEAR) % SUB;
      long low = (1L << exp) + ((long) sub << (exp - SUB_BITS));
      return low + (1L << (exp - SUB_BITS)) - 1;
    }

    long count() {
      return total.sum();
    }

    void add(Histogram other) {
      for (int i = 0; i < BUCKETS; i++) {
        long c = other.counts.get(i);
        if (c != 0) {
          counts.addAndGet(i, c);
          total.add(c);
        }
      }
    }

    long percentile(double q) {
      long n = 0;
      for (int i = 0; i < BUCKETS; i++) {
        n += counts.get(i);
      }
      if (n == 0) {
        return -1;
      }
      long rank = Math.max(1, (long) Math.ceil(q * n));
      long seen = 0;
      for (int i = 0; i < BUCKETS; i++) {
        seen += counts.get(i);
        if (seen >= rank) {
          return upperBound(i);
        }
      }
      return upperBound(BUCKETS - 1);
    }
  }
}
