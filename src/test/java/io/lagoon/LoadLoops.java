package io.lagoon;

import io.r2dbc.spi.Connection;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * The reliability scenarios' load: {@code loops} concurrent loops of acquire, work (by default
 * {@code SELECT 1}), close, each failed operation followed by a 50 ms pause, as an application
 * retry would. Records successes per 10 ms bucket and every failure with its timing, so a
 * scenario can ask what happened in any window. Thread-safe.
 */
final class LoadLoops {

  static final Duration PAUSE_AFTER_FAILURE = Duration.ofMillis(50);
  private static final long BUCKET_NANOS = TimeUnit.MILLISECONDS.toNanos(10);
  private static final int BUCKETS = 30_000; // 300 s

  /** One failed operation: when it started and ended, whether the acquire failed, and why. */
  record Failure(long startNanos, long endNanos, boolean acquireFailed, long acquireNanos,
      Throwable error) {
    long millis() {
      return TimeUnit.NANOSECONDS.toMillis(endNanos - startNanos);
    }
  }

  private final ConnectionPool pool;
  private final int loops;
  private final Function<Connection, Publisher<?>> work;
  private final @Nullable Duration workTimeout;
  private final long t0 = System.nanoTime();
  private final AtomicLongArray okByEnd = new AtomicLongArray(BUCKETS);
  private final ConcurrentLinkedQueue<Failure> failures = new ConcurrentLinkedQueue<>();
  private final AtomicInteger running = new AtomicInteger();
  private volatile boolean stopping;
  private final List<Disposable> subscriptions = new ArrayList<>();

  /**
   * @param workTimeout the application's own bound on its work (not on the acquire), or null
   */
  LoadLoops(ConnectionPool pool, int loops, Function<Connection, Publisher<?>> work,
      @Nullable Duration workTimeout) {
    this.pool = pool;
    this.loops = loops;
    this.work = work;
    this.workTimeout = workTimeout;
  }

  static Publisher<?> selectOne(Connection c) {
    return Flux.from(c.createStatement("SELECT 1").execute())
        .concatMap(r -> r.map((row, meta) -> row.get(0, Integer.class)));
  }

  LoadLoops start() {
    for (int i = 0; i < loops; i++) {
      running.incrementAndGet();
      subscriptions.add(Mono.defer(this::operation)
          .repeat(() -> !stopping)
          .doFinally(s -> running.decrementAndGet())
          .subscribe(null, e -> { /* operation() never errors */ }));
    }
    return this;
  }

  private Mono<Boolean> operation() {
    long start = System.nanoTime();
    long[] acquired = {0};
    Mono<Object> op = Mono.usingWhen(
        pool.create().doOnNext(c -> acquired[0] = System.nanoTime()),
        c -> {
          Mono<Object> w = Flux.<Object>from(work.apply(c)).then(Mono.just((Object) Boolean.TRUE));
          return workTimeout == null ? w : w.timeout(workTimeout);
        },
        Connection::close,
        (c, err) -> c.close(),
        Connection::close);
    return op
        .map(x -> {
          okByEnd.incrementAndGet(bucket(System.nanoTime()));
          return Boolean.TRUE;
        })
        .onErrorResume(e -> {
          long end = System.nanoTime();
          boolean inAcquire = acquired[0] == 0;
          failures.add(new Failure(start, end, inAcquire, (inAcquire ? end : acquired[0]) - start, e));
          return Mono.delay(PAUSE_AFTER_FAILURE).thenReturn(Boolean.FALSE);
        });
  }

  private int bucket(long nanos) {
    long b = (nanos - t0) / BUCKET_NANOS;
    return (int) Math.max(0, Math.min(BUCKETS - 1, b));
  }

  /** Stops the loops after their current operation; fails if one does not end within bound. */
  void stop(Duration bound) {
    stopping = true;
    long deadline = System.nanoTime() + bound.toNanos();
    while (running.get() > 0) {
      if (System.nanoTime() - deadline > 0) {
        subscriptions.forEach(Disposable::dispose);
        throw new AssertionError(running.get() + " of " + loops + " loops still had an operation"
            + " running " + bound.toMillis() + " ms after they were asked to stop: something hangs."
            + " Pool: " + pool.stats());
      }
      Mono.delay(Duration.ofMillis(5)).block();
    }
  }

  long now() {
    return System.nanoTime();
  }

  /** Operations that succeeded, ending in [from, to). */
  long okBetween(long fromNanos, long toNanos) {
    long n = 0;
    for (int b = bucket(fromNanos); b < bucket(toNanos); b++) {
      n += okByEnd.get(b);
    }
    return n;
  }

  long ok() {
    return okBetween(t0, System.nanoTime() + BUCKET_NANOS);
  }

  List<Failure> failures() {
    return new ArrayList<>(failures);
  }

  List<Failure> failuresBetween(long fromNanos, long toNanos) {
    List<Failure> in = new ArrayList<>();
    for (Failure f : failures) {
      if (f.endNanos() - fromNanos >= 0 && f.endNanos() - toNanos < 0) {
        in.add(f);
      }
    }
    return in;
  }

  /** Successful operations per second, ending in [from, to). */
  double opsPerSecond(long fromNanos, long toNanos) {
    return okBetween(fromNanos, toNanos) * 1e9 / Math.max(1, toNanos - fromNanos);
  }

  /** The end of the first 10 ms bucket at or after {@code from} in which an operation succeeded. */
  long firstSuccessAfter(long fromNanos) {
    for (int b = bucket(fromNanos); b < BUCKETS; b++) {
      if (okByEnd.get(b) > 0) {
        return t0 + (b + 1) * BUCKET_NANOS;
      }
    }
    return -1;
  }

  /**
   * The end of the first 100 ms window at or after {@code from} whose successes reach {@code
   * fraction} of {@code perSecond}, or -1.
   */
  long throughputRestoredAfter(long fromNanos, double perSecond, double fraction) {
    int window = 10; // buckets: 100 ms
    long need = (long) (perSecond * fraction / 10);
    for (int b = bucket(fromNanos); b + window < BUCKETS; b++) {
      long n = 0;
      for (int i = b; i < b + window; i++) {
        n += okByEnd.get(i);
      }
      if (n >= need && need > 0) {
        return t0 + (b + window) * BUCKET_NANOS;
      }
      if (t0 + (b + window) * BUCKET_NANOS - System.nanoTime() > 0) {
        return -1;
      }
    }
    return -1;
  }

  static long ms(long nanos) {
    return TimeUnit.NANOSECONDS.toMillis(nanos);
  }
}
