package io.lagoon.reliability;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import io.lagoon.testing.Await;
import io.lagoon.testing.FakeConnection;
import io.lagoon.testing.FakeConnectionFactory;
import io.r2dbc.spi.Connection;
import java.time.Duration;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.Disposable;
import reactor.core.Disposables;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * Scenario 4, cancellation storm: 256 concurrent subscribers (lanes) acquire from a pool of 10
 * over the test driver, 100,000 times in all (1,000,000 with {@code -Dlagoon.long=true}), and
 * cancel at random moments: while queued or while a connect runs for them (after a random delay),
 * at once (racing the fast path on the same thread), at hand-off (another lane cancels them on
 * another thread while it releases the connection they are next in line for), inside {@code
 * onNext} right after delivery (what {@code take(1)} does: the subscriber keeps the connection),
 * and while lent (a {@code usingWhen} cancelled during its work). Connects fail at random, their
 * latency changes, and a soft eviction now and then makes the pool reconnect.
 *
 * <p>Every subscriber learns which physical connection it holds ({@code SELECT connection_id()})
 * and registers it; a second holder of the same connection at the same time is the forbidden
 * outcome. Afterwards nothing is leaked (every delivered connection was closed once, nothing lent
 * or pending, driver's open connections = pool's), and after the pool closes, opened = closed.
 *
 * <p>The random choices come from a seed printed in the line of figures; rerun with {@code
 * -Dlagoon.seed=N} to replay the same choices (thread interleavings still differ).
 */
class CancellationStormScenarioTest {

  private static final int LANES = 256;
  private static final int MAX_SIZE = 10;
  private static final long SEED = Long.getLong("lagoon.seed", 20_261_206L);
  private static final boolean LONG = Boolean.getBoolean("lagoon.long");
  private static final long ACQUIRES = LONG ? 1_000_000 : 100_000;
  private static final Duration BOUND = LONG ? Duration.ofMinutes(15) : Duration.ofSeconds(90);
  private static final Duration[] LATENCIES =
      {Duration.ZERO, Duration.ofNanos(50_000), Duration.ofNanos(400_000)};

  // lane actions
  private static final int PLAIN = 0;
  private static final int CANCEL_AFTER_DELAY = 1;
  private static final int CANCEL_AT_ONCE = 2;
  private static final int CANCEL_IN_ON_NEXT = 3;
  private static final int RELEASE_RACING_A_CANCEL = 4;

  private final Scheduler storm = Schedulers.newParallel("storm", 4);
  private final FakeConnectionFactory driver = new FakeConnectionFactory()
      .connectLatency(LATENCIES[1]);
  private ConnectionPool pool;

  private final AtomicLong issued = new AtomicLong();
  private final CountDownLatch lanesDone = new CountDownLatch(LANES);
  private final AtomicReferenceArray<Probe> waiting = new AtomicReferenceArray<>(LANES);
  private final Map<Long, Object> holders = new ConcurrentHashMap<>();
  private final AtomicReference<String> violation = new AtomicReference<>();
  private final LongAdder lends = new LongAdder();
  private final LongAdder closes = new LongAdder();
  private final LongAdder lateDeliveries = new LongAdder();
  private final LongAdder cancelsTooLate = new LongAdder();
  private final LongAdder softEvictions = new LongAdder();
  private final LongAdder doubleLends = new LongAdder();
  private final Map<String, LongAdder> cancels = new ConcurrentHashMap<>();
  private final Map<String, LongAdder> errors = new ConcurrentHashMap<>();

  @AfterEach
  void cleanUp() {
    if (pool != null) {
      pool.dispose();
    }
    storm.dispose();
  }

  @Test
  void cancellingAtEveryMomentNeverLeaksNorLendsAConnectionTwice() throws InterruptedException {
    pool = ConnectionPool.builder(driver).poolName("storm").maxSize(MAX_SIZE).initialSize(0)
        .maxConcurrentCreates(3).maxAcquireTime(Duration.ofSeconds(2)).acquireRetry(1).build();
    long start = System.nanoTime();
    for (int i = 0; i < LANES; i++) {
      Lane lane = new Lane(i, new Random(SEED * 1_000_003L + i));
      storm.schedule(lane::next);
    }
    boolean finished = lanesDone.await(BOUND.toMillis(), TimeUnit.MILLISECONDS);
    long elapsedMs = (System.nanoTime() - start) / 1_000_000;
    assertThat(finished).as("seed %d: the lanes finished within %s: %s", SEED, BOUND, state())
        .isTrue();
    driver.reset(); // no more failures or latency while the last connects and closes settle
    // At rest: everything lent came back, and the driver's open connections are exactly the
    // pool's. Read in a loop, because a pool that ended down (every connection retired, the last
    // connect failed) still opens one in the background after its back-off.
    Await.until(() -> "every delivered connection came back and the driver's open connections are"
        + " the pool's; " + state(), Await.BOUND, () -> {
          PoolStats s = pool.stats();
          return s.acquired() == 0 && s.pending() == 0 && s.allocated() == s.idle()
              && driver.connectsInFlight() == 0 && lends.sum() == closes.sum()
              && driver.open() == s.allocated() && pool.stats().equals(s);
        });

    PoolStats s = pool.stats();
    String figures = "seed=" + SEED + ", acquires=" + ACQUIRES + " from " + LANES + " subscribers"
        + " in " + elapsedMs + " ms, lent=" + lends.sum() + ", cancels " + counts(cancels)
        + " (of which the delivery won " + lateDeliveries.sum() + ", too late after delivery "
        + cancelsTooLate.sum() + "), errors " + counts(errors) + ", soft evictions="
        + softEvictions.sum() + ", connects opened=" + driver.opened() + " failed="
        + driver.failedConnects() + ", max live=" + driver.maxLive() + ", lent twice at once="
        + doubleLends.sum();
    String where = figures + "; pool " + s + "; driver " + driver;

    assertThat(violation.get()).as(where).isNull();
    assertThat(s.acquires()).as("the pool lent exactly what subscribers received; " + where)
        .isEqualTo(lends.sum());
    assertThat(closes.sum()).as("every lent connection was closed once; " + where)
        .isEqualTo(lends.sum());
    assertThat(holders).as(where).isEmpty();
    assertThat((long) driver.opened()).as("every connect the driver made was seen by the pool; "
        + where).isEqualTo(s.created());
    assertThat(driver.maxLive()).as("never more than maxSize; " + where)
        .isLessThanOrEqualTo(MAX_SIZE);
    assertThat(driver.doubleClosed()).as(where).isZero();
    // A cancel while lent may close the handle while its last query still runs on another
    // thread: the pool then replaces the connection (a stream was still open), so that query meets
    // a closed connection. Only such races may touch a closed connection.
    assertThat((long) driver.usedAfterClose()).as(where)
        .isLessThanOrEqualTo(cancels.getOrDefault("while lent", new LongAdder()).sum());
    for (String kind : new String[] {"after a delay", "at once", "at hand-off", "in onNext",
        "while lent"}) {
      assertThat(cancels.get(kind)).as("cancels %s happened; %s", kind, where).isNotNull();
    }
    assertThat(driver.failedConnects()).as("connects failed; " + where).isPositive();

    pool.close().block(Duration.ofSeconds(30));
    Await.until(() -> "the closed pool closed every connection it held; " + state(), Await.BOUND,
        () -> driver.live() == 0);
    assertThat(driver.opened()).as("opened = closed after close; " + where)
        .isEqualTo(driver.closed());
    System.out.println("[reliability] cancellation-storm: " + figures);
  }

  /** One subscriber, acquiring again and again until the budget of acquires is spent. */
  private final class Lane {
    final int index;
    final Random random;

    Lane(int index, Random random) {
      this.index = index;
      this.random = random;
    }

    /** Starts the next acquire; runs on the storm scheduler, one step of a lane at a time. */
    void next() {
      if (issued.incrementAndGet() > ACQUIRES) {
        lanesDone.countDown();
        return;
      }
      int knob = random.nextInt(1_000);
      if (knob < 3) {
        driver.failNextConnects(1 + random.nextInt(3));
      } else if (knob < 4) {
        softEvictions.increment();
        pool.softEvict().subscribe(null, e -> violation("softEvict failed: " + e));
      } else if (knob < 15) {
        driver.connectLatency(LATENCIES[random.nextInt(LATENCIES.length)]);
      }
      int dice = random.nextInt(100);
      if (dice < 12) {
        whileLent(random.nextInt(200_000), random.nextInt(200_000));
        return;
      }
      int action = dice < 52 ? PLAIN : dice < 64 ? CANCEL_AFTER_DELAY : dice < 70 ? CANCEL_AT_ONCE
          : dice < 82 ? CANCEL_IN_ON_NEXT : RELEASE_RACING_A_CANCEL;
      new Probe(this, action, random.nextInt(400_000), random.nextInt(4) == 0
          ? random.nextInt(100_000) : 0, random.nextInt(LANES)).start();
    }

    void continueLater() {
      storm.schedule(this::next);
    }

    /** A failed acquire: a 10 ms pause, as a retrying application would make. */
    void continueAfterError() {
      storm.schedule(this::next, 10, TimeUnit.MILLISECONDS);
    }

    /**
     * Acquires through {@code usingWhen}, and once the connection is lent, cancels the whole
     * subscription after {@code cancelNanos} while the work takes {@code workNanos}: a cancel
     * while lent when it comes first. The connection must come back either way.
     */
    void whileLent(long workNanos, long cancelNanos) {
      AtomicBoolean delivered = new AtomicBoolean();
      AtomicLong heldId = new AtomicLong(-1);
      AtomicBoolean releasing = new AtomicBoolean();
      Disposable.Swap subscription = Disposables.swap();
      Object token = new Object();
      Flux<Long> op = Flux.usingWhen(pool.create(),
          c -> {
            delivered.set(true);
            lends.increment();
            long id = register(c, token);
            heldId.set(id);
            storm.schedule(subscription::dispose, cancelNanos, TimeUnit.NANOSECONDS);
            // The cancel may close the connection while this last check runs on another thread:
            // a query failing because of that close is expected, anything else is not.
            return Mono.delay(Duration.ofNanos(workNanos), storm)
                .map(tick -> checkSame(c, id, releasing::get));
          },
          c -> closeThenContinue(c, heldId.get(), token, releasing),
          (c, e) -> closeThenContinue(c, heldId.get(), token, releasing),
          c -> {
            count(cancels, "while lent");
            return closeThenContinue(c, heldId.get(), token, releasing);
          });
      subscription.update(op.subscribe(null, e -> {
        if (!delivered.get()) {
          count(errors, e.getClass().getSimpleName());
          continueAfterError();
        } else {
          violation("work on a lent connection failed: " + e);
        }
      }));
    }

    private Mono<Void> closeThenContinue(Connection c, long id, Object token,
        AtomicBoolean releasing) {
      return Mono.defer(() -> {
        releasing.set(true);
        holders.remove(id, token);
        return Mono.from(c.close());
      }).doOnError(e -> violation("close failed: " + e))
          .doFinally(signal -> {
            closes.increment();
            continueLater();
          });
    }
  }

  /** One acquire of a lane, with the moment it cancels at. */
  private final class Probe implements CoreSubscriber<Connection> {
    static final int WAITING = 0;
    static final int DELIVERED = 1;
    static final int FAILED = 2;
    static final int CANCELLED = 3;

    final Lane lane;
    final int action;
    final long cancelDelayNanos;
    final long holdNanos;
    final int victim;
    final AtomicInteger state = new AtomicInteger(WAITING);
    volatile Subscription subscription;

    Probe(Lane lane, int action, long cancelDelayNanos, long holdNanos, int victim) {
      this.lane = lane;
      this.action = action;
      this.cancelDelayNanos = cancelDelayNanos;
      this.holdNanos = holdNanos;
      this.victim = victim;
    }

    void start() {
      pool.create().subscribe(this);
      if (state.get() == WAITING) {
        waiting.set(lane.index, this); // other lanes may now cancel it at hand-off
      }
      if (action == CANCEL_AT_ONCE) {
        cancel("at once");
      } else if (action == CANCEL_AFTER_DELAY && state.get() == WAITING) {
        storm.schedule(() -> cancel("after a delay"), cancelDelayNanos, TimeUnit.NANOSECONDS);
      }
    }

    @Override
    public void onSubscribe(Subscription s) {
      subscription = s;
      s.request(1);
    }

    @Override
    public void onNext(Connection c) {
      waiting.compareAndSet(lane.index, this, null);
      lends.increment();
      if (!state.compareAndSet(WAITING, DELIVERED)) {
        // This subscriber cancelled, but inside the pool the delivery came first: the connection
        // is this subscriber's to close (Reactor operators would discard it).
        lateDeliveries.increment();
        long id = register(c, this);
        checkSame(c, id);
        release(c, id, false);
        return;
      }
      if (action == CANCEL_IN_ON_NEXT) {
        subscription.cancel(); // as take(1) does: the connection is still this subscriber's
        count(cancels, "in onNext");
      }
      long id = register(c, this);
      Runnable release = () -> {
        checkSame(c, id);
        release(c, id, true);
      };
      if (holdNanos == 0) {
        storm.schedule(release);
      } else {
        storm.schedule(release, holdNanos, TimeUnit.NANOSECONDS);
      }
    }

    private void release(Connection c, long id, boolean continueLane) {
      if (action == RELEASE_RACING_A_CANCEL) {
        Probe next = waiting.get(victim);
        if (next != null) {
          storm.schedule(() -> next.cancel("at hand-off")); // on another worker, as this closes
        }
      }
      holders.remove(id, this);
      Mono.from(c.close()).subscribe(null, e -> violation("close failed: " + e), () -> {
        closes.increment();
        if (continueLane) {
          lane.continueLater();
        }
      });
    }

    @Override
    public void onError(Throwable t) {
      waiting.compareAndSet(lane.index, this, null);
      if (state.compareAndSet(WAITING, FAILED)) {
        count(errors, t.getClass().getSimpleName());
        lane.continueAfterError();
      }
    }

    @Override
    public void onComplete() {}

    void cancel(String moment) {
      if (state.compareAndSet(WAITING, CANCELLED)) {
        waiting.compareAndSet(lane.index, this, null);
        subscription.cancel();
        count(cancels, moment);
        lane.continueLater();
      } else if (state.get() == DELIVERED) {
        cancelsTooLate.increment();
      }
    }
  }

  /** Learns which physical connection a handle holds and registers this holder as its only one. */
  private long register(Connection c, Object holder) {
    long id = connectionId(c, () -> false);
    Object other = holders.putIfAbsent(id, holder);
    if (other != null) {
      doubleLends.increment();
      violation("connection " + id + " lent to two subscribers at once");
    }
    return id;
  }

  /** The handle still reaches the connection it was lent (the pool did not take it back). */
  private long checkSame(Connection c, long id) {
    return checkSame(c, id, () -> false);
  }

  /** As above; a failure while {@code released} says the holder is closing it is no violation. */
  private long checkSame(Connection c, long id, BooleanSupplier released) {
    long now = connectionId(c, released);
    if (now != id && !released.getAsBoolean()) {
      violation("a held handle moved from connection " + id + " to " + now);
    }
    return now;
  }

  /** {@code SELECT connection_id()} through the handle; the test driver answers synchronously. */
  private long connectionId(Connection c, BooleanSupplier released) {
    AtomicLong id = new AtomicLong(-1);
    AtomicBoolean excused = new AtomicBoolean();
    Flux.defer(() -> Flux.from(c.createStatement("SELECT connection_id()").execute()))
        .concatMap(r -> r.map((row, meta) -> row.get(0, Long.class)))
        .subscribe(id::set, e -> {
          if (released.getAsBoolean()) {
            excused.set(true);
          } else {
            violation("a held connection failed a query: " + e);
          }
        });
    if (id.get() < 0 && !excused.get() && violation.get() == null) {
      violation("SELECT connection_id() did not answer at once");
    }
    return id.get();
  }

  private void violation(String what) {
    violation.compareAndSet(null, what + " (seed " + SEED + ")");
  }

  private static void count(Map<String, LongAdder> m, String key) {
    m.computeIfAbsent(key, k -> new LongAdder()).increment();
  }

  private static Map<String, Long> counts(Map<String, LongAdder> m) {
    Map<String, Long> out = new TreeMap<>();
    m.forEach((k, v) -> out.put(k, v.sum()));
    return out;
  }

  private String state() {
    StringBuilder open = new StringBuilder();
    for (FakeConnection c : driver.connections()) {
      if (!c.isClosed()) {
        open.append("\n  open connection ").append(c.id()).append(": ").append(c.history())
            .append(", operations ").append(c.operations()).append(", SQL ")
            .append(c.executedSql().size());
      }
    }
    return "issued=" + issued.get() + ", lent=" + lends.sum() + ", closed=" + closes.sum()
        + ", pool " + pool.stats() + ", driver " + driver + ", violation=" + violation.get()
        + ", driver's open connections:" + open;
  }
}
