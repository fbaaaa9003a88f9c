package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;

/**
 * Timeouts racing deliveries against PostgreSQL: {@code create().timeout(...)} drops a connection
 * that arrives as the timeout fires (Reactor discards it), so nobody closes it. The pool takes such
 * connections back once their handles are collected; none is lost for good.
 */
class PostgresAbandonTest {

  private final String app = "lagoon-abandon-" + UUID.randomUUID().toString().substring(0, 8);
  private ConnectionPool pool;

  @AfterEach
  void close() {
    if (pool != null) {
      pool.dispose();
    }
  }

  @Test
  void subMillisecondTimeoutsOnFourThreadsLoseNoConnection() throws Exception {
    pool = ConnectionPool.builder(ConnectionFactories.get(ConnectionFactoryOptions
            .parse(PostgresSupport.r2dbcUrl()).mutate()
            .option(Option.valueOf("applicationName"), app).build()))
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
    // Every connection the timeouts dropped comes back once the collector finds its handle and
    // housekeeping (every 100 ms here) runs; poll for it, without taking connections meanwhile.
    for (int i = 0; i < 300 && pool.stats().acquired() > 0; i++) {
      System.gc();
      Thread.sleep(50);
    }
    System.out.println("[abandon] served=" + served + " timedOut=" + timedOut + " " + pool.stats());
    assertThat(pool.stats().acquired()).as("nobody holds a connection: none may stay lent")
        .isZero();
    assertThat(pool.create().flatMap(c -> Mono.from(c.close()).thenReturn(1))
        .block(Duration.ofSeconds(10))).isEqualTo(1);
  }
}
