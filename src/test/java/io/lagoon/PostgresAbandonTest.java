package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Backends;
import io.lagoon.testing.Gc;
import io.lagoon.testing.Peek;
import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.Connection;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;

/**
 * Timeouts racing deliveries against PostgreSQL: {@code create().timeout(...)} drops a connection
 * that arrives as the timeout fires (Reactor discards it), so nobody closes it. The pool takes such
 * connections back once their handles are collected; none is lost for good.
 *
 * <p>No sleep decides the outcome: after the run, each round proves that a garbage collection
 * happened ({@link Gc#collect()}), then runs the pool's own reclaim ({@link
 * Peek#reclaimAbandoned}), until nothing is lent or a bounded number of rounds has passed.
 */
class PostgresAbandonTest {

  /** Proven collections after which a handle nobody refers to must have been collected. */
  private static final int COLLECTIONS = 10;

  private final String app = Backends.marker("abandon");
  private ConnectionPool pool;

  @AfterEach
  void close() {
    if (pool != null) {
      pool.dispose();
    }
  }

  @Test
  void subMillisecondTimeoutsOnFourThreadsLoseNoConnection() throws InterruptedException {
    pool = ConnectionPool.builder(PostgresSupport.connectionFactory(app))
        .poolName(app).maxSize(2).initialSize(2).maxAcquireTime(Duration.ofSeconds(10))
        .backgroundEvictionInterval(Duration.ofMillis(100)).build();
    AtomicInteger served = new AtomicInteger();
    AtomicInteger timedOut = new AtomicInteger();
    List<Thread> threads = new ArrayList<>();
    for (int t = 0; t < 4; t++) {
      Thread thread = new Thread(() -> {
        for (int i = 0; i < 1_500; i++) {
          long nanos = ThreadLocalRandom.current().nextLong(20_000, 1_000_000);
          Connection c = pool.create().timeout(Duration.ofNanos(nanos))
              .onErrorResume(java.util.concurrent.TimeoutException.class, e -> {
                timedOut.incrementAndGet();
                return Mono.empty();
              })
              .block(Duration.ofSeconds(30));
          if (c != null) {
            served.incrementAndGet();
            Mono.from(c.close()).block(Duration.ofSeconds(30));
          }
        }
      }, "abandon-" + t);
      threads.add(thread);
      thread.start();
    }
    for (Thread thread : threads) {
      thread.join(120_000);
      assertThat(thread.isAlive()).isFalse();
    }
    // Nobody holds a connection now: whatever is still lent was dropped by a timeout. It comes
    // back once the collector has found its handle and the pool's reclaim runs (housekeeping runs
    // it every 100 ms too); each round proves a collection, then runs the reclaim itself.
    int lentAfterRun = pool.stats().acquired();
    int rounds = 0;
    while (pool.stats().acquired() > 0 && rounds < COLLECTIONS) {
      Gc.collect();
      Peek.reclaimAbandoned(pool);
      rounds++;
    }
    System.out.println("[abandon] served=" + served + " timedOut=" + timedOut + " lent after the"
        + " run=" + lentAfterRun + ", proven collections=" + rounds + " " + pool.stats());
    assertThat(pool.stats().acquired()).as("nobody holds a connection: none may stay lent, yet"
        + " %d are after %d proven collections and reclaims", pool.stats().acquired(), rounds)
        .isZero();
    assertThat(pool.create().flatMap(c -> Mono.from(c.close()).thenReturn(1))
        .block(Duration.ofSeconds(10))).isEqualTo(1);
  }
}
