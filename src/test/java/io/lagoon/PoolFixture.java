package io.lagoon;

import io.lagoon.testing.FakeConnectionFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.AfterEach;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * A fresh fixture per test: a {@link VirtualTimeScheduler} {@link #time}, a fake {@link #driver}
 * on it, and {@link #pool} to build pools on both, all disposed after the test.
 */
abstract class PoolFixture {

  final VirtualTimeScheduler time = VirtualTimeScheduler.create();
  final FakeConnectionFactory driver = new FakeConnectionFactory().scheduler(time);
  private final List<ConnectionPool> pools = new ArrayList<>();
  private final String poolName;

  /** @param poolName the name of every pool from {@link #pool} (it appears in error messages) */
  PoolFixture(String poolName) {
    this.poolName = poolName;
  }

  @AfterEach
  void closePools() {
    pools.forEach(ConnectionPool::dispose);
    time.dispose();
  }

  /** A pool on {@link #driver} in {@link #time}, with initialSize 0 unless {@code config} says. */
  ConnectionPool pool(UnaryOperator<ConnectionPoolBuilder> config) {
    ConnectionPool p = config.apply(ConnectionPool.builder(driver).initialSize(0).scheduler(time)
        .poolName(poolName)).build();
    pools.add(p);
    return p;
  }
}
