package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.FakeConnection;
import io.lagoon.testing.FakeConnectionFactory;
import io.lagoon.testing.SerializedVirtualTime;
import io.r2dbc.spi.Connection;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Mono;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * Many threads mix acquires, cancels at random moments, releases, failing and slow connects and
 * timeouts (in virtual time, advanced by the workers themselves). The pool must never lend one
 * physical connection to two subscribers at once, and after every run its books must balance.
 */
class RandomizedPoolTest {

  private static final int THREADS = 4;
  private static final int RUNS = 10;
  private static final int OPS_PER_THREAD_PER_RUN = 2_500; // 100,000 operations in all

  @Test
  void invariantsHoldUnderRandomOperations() throws Exception {
    long seed = Long.getLong("lagoon.seed", 20261121L);
    long timeouts = 0;
    long createFailures = 0;
    long acquires = 0;
    for (int run = 0; run < RUNS; run++) {
      PoolStats s = runOnce(seed + run, run);
      timeouts += s.timeouts();
      createFailures += s.createFailures();
      acquires += s.acquires();
    }
    assertThat(acquires).as("the runs lent connections").isGreaterThan(2_000);
    assertThat(timeouts).as("the runs exercised timeouts").isPositive();
    assertThat(createFailures).as("the runs exercised failed connects").isPositive();
  }

  private PoolStats runOnce(long seed, int run) throws Exception {
    VirtualTimeScheduler time = new SerializedVirtualTime(); // safe for concurrent use
    FakeConnectionFactory driver = new FakeConnectionFactory().scheduler(time);
    driver.failNextConnects(run % 3); // so that some runs start against a refusing database
    ConnectionPool pool = ConnectionPool.builder(driver).maxSize(5).initialSize(run % 2)
        .maxConcurrentCreates(2).maxPendingAcquires(40).maxAcquireTime(Duration.ofMillis(5))
        .maxCreateConnectionTime(Duration.ofMillis(3)).scheduler(time).poolName("random").build();
    ConcurrentHashMap<FakeConnection, Probe> lentNow = new ConcurrentHashMap<>();
    List<Probe> all = new CopyOnWriteArrayList<>();
    AtomicReference<Throwable> failure = new AtomicReference<>();
    AtomicInteger served = new AtomicInteger();
    CyclicBarrier start = new CyclicBarrier(THREADS);
    List<Thread> threads = new ArrayList<>();
    for (int t = 0; t < THREADS; t++) {
      Random random = new Random(seed * 31 + t);
      Thread thread = new Thread(() -> {
        try {
          start.await();
          work(random, pool, driver, time, lentNow, all, served);
        } catch (Throwable e) {
          failure.compareAndSet(null, e);
        }
      }, "random-" + t);
      threads.add(thread);
      thread.start();
    }
    for (Thread thread : threads) {
      thread.join();
    }
    if (failure.get() != null) {
      throw new AssertionError("run " + run + " (seed " + seed + ") failed", failure.get());
    }

    // The workers stopped and virtual time stands still: nothing moves, so the pool must not hold
    // an idle connection while a subscriber waits (no lost wake-up).
    PoolStats still = pool.stats();
    assertThat(still.pending() == 0 || still.idle() == 0)
        .as("run %d (seed %d): idle connections while subscribers wait: %s", run, seed, still)
        .isTrue();

    // Settle: stop every outstanding acquire, return everything, let timers and connects finish.
    driver.reset().scheduler(time);
    for (int round = 0; round < 10; round++) {
      for (Probe p : all) {
        p.cancel();
        p.releaseIfHeld(lentNow);
      }
      time.advanceTimeBy(Duration.ofSeconds(10));
    }
    for (Probe p : all) {
      p.releaseIfHeld(lentNow);
    }

    PoolStats s = pool.stats();
    String where = "run " + run + " (seed " + seed + "): " + s + "; driver " + driver;
    assertThat(lentNow).as(where).isEmpty();
    assertThat(s.pending()).as(where).isZero();
    assertThat(s.acquired()).as(where).isZero();
    assertThat(s.allocated()).as("allocated = idle + acquired; " + where)
        .isEqualTo(s.idle() + s.acquired());
    assertThat(driver.open()).as("opened - closed = allocated; " + where).isEqualTo(s.allocated());
    assertThat(driver.maxLive()).as("never more than maxSize; " + where).isLessThanOrEqualTo(5);
    assertThat(driver.doubleClosed()).as(where).isZero();
    assertThat(driver.usedAfterClose()).as(where).isZero();

    pool.closeGracefully(Duration.ZERO).block(Duration.ofSeconds(5));
    assertThat(driver.open()).as("after close; " + where).isZero();
    time.dispose();
    return s;
  }

  private static void work(Random random, ConnectionPool pool, FakeConnectionFactory driver,
      VirtualTimeScheduler time, ConcurrentHashMap<FakeConnection, Probe> lentNow, List<Probe> all,
      AtomicInteger served) {
    List<Probe> mine = new ArrayList<>();
    for (int op = 0; op < OPS_PER_THREAD_PER_RUN; op++) {
      int dice = random.nextInt(100);
      if (dice < 35) {
        Probe p = new Probe(lentNow, served);
        mine.add(p);
        all.add(p);
        pool.create().subscribe(p);
        if (random.nextInt(4) == 0) {
          p.cancel(); // at once: races with a fast-path delivery on this very thread
        }
      } else if (dice < 65) {
        mine.removeIf(Probe::finishedEmptyHanded);
        int from = mine.isEmpty() ? 0 : random.nextInt(mine.size());
        for (int k = 0; k < mine.size(); k++) {
          Probe p = mine.get((from + k) % mine.size());
          if (p.holds()) {
            mine.remove(p);
            p.releaseIfHeld(lentNow);
            break;
          }
        }
      } else if (dice < 75) {
        if (!mine.isEmpty()) {
          mine.get(random.nextInt(mine.size())).cancel();
        }
      } else if (dice < 85) {
        time.advanceTimeBy(Duration.ofMillis(1 + random.nextInt(8)));
      } else if (dice < 90) {
        driver.failNextConnects(1);
      } else if (dice < 95) {
        driver.connectLatency(random.nextBoolean() ? Duration.ZERO : Duration.ofMillis(2));
      } else {
        driver.hangConnects(random.nextInt(5) == 0);
      }
    }
    for (Probe p : mine) {
      p.releaseIfHeld(lentNow);
    }
  }

  /** A subscriber that checks, on delivery, that nobody else holds the same physical connection. */
  private static final class Probe implements CoreSubscriber<Connection> {
    private final ConcurrentHashMap<FakeConnection, Probe> lentNow;
    private final AtomicInteger served;
    private final AtomicReference<Subscription> subscription = new AtomicReference<>();
    private final AtomicReference<Connection> held = new AtomicReference<>();
    private final AtomicInteger terminal = new AtomicInteger();

    Probe(ConcurrentHashMap<FakeConnection, Probe> lentNow, AtomicInteger served) {
      this.lentNow = lentNow;
      this.served = served;
    }

    @Override
    public void onSubscribe(Subscription s) {
      subscription.set(s);
      s.request(1);
    }

    @Override
    public void onNext(Connection c) {
      FakeConnection physical = (FakeConnection) io.lagoon.testing.Peek.physical(c);
      Probe other = lentNow.putIfAbsent(physical, this);
      if (other != null) {
        throw new AssertionError("connection " + physical.id() + " lent twice");
      }
      held.set(c); // before the terminal count, which other threads read to prune their lists
      if (terminal.incrementAndGet() != 1) {
        throw new AssertionError("more than one terminal signal");
      }
      served.incrementAndGet();
    }

    @Override
    public void onError(Throwable t) {
      if (terminal.incrementAndGet() != 1) {
        throw new AssertionError("more than one terminal signal", t);
      }
    }

    @Override
    public void onComplete() {}

    boolean holds() {
      return held.get() != null;
    }

    boolean finishedEmptyHanded() {
      return terminal.get() > 0 && held.get() == null;
    }

    void cancel() {
      Subscription s = subscription.get();
      if (s != null) {
        s.cancel();
      }
    }

    void releaseIfHeld(ConcurrentHashMap<FakeConnection, Probe> lentNow) {
      Connection c = held.getAndSet(null);
      if (c != null) {
        FakeConnection physical = (FakeConnection) io.lagoon.testing.Peek.physical(c);
        lentNow.remove(physical, this);
        Mono.from(c.close()).block();
      }
    }
  }
}
