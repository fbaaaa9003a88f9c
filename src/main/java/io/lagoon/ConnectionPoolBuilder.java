package io.lagoon;

import io.lagoon.internal.PoolConfig;
import io.r2dbc.spi.ConnectionFactory;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicInteger;
import org.jspecify.annotations.Nullable;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * Builds a {@link ConnectionPool}. Each method is named like the URL option that sets the same
 * value. A method checks its own value at once; {@link #build()} checks the rules that tie values
 * together. Every violation is an {@link IllegalArgumentException} whose message names the option,
 * echoes the value and states the rule; nothing is clamped silently.
 *
 * <p>Not thread-safe: configure on one thread, then call {@link #build()}, which may be called more
 * than once to build independent pools.
 */
public final class ConnectionPoolBuilder {

  /** Default for {@link #maxSize(int)}. */
  public static final int DEFAULT_MAX_SIZE = 10;
  /** Default for {@link #initialSize(int)}, lowered to {@code maxSize} when that is smaller. */
  public static final int DEFAULT_INITIAL_SIZE = 10;
  /**
   * Default for {@link #maxConcurrentCreates(int)}, lowered to {@code maxSize} when that is
   * smaller. Three parallel connects fill a pool of 10 in four connect round-trips while a restarted
   * or failing-over database sees at most three handshakes (TLS, authentication, a forked backend)
   * from this pool at once instead of {@code maxSize}.
   */
  public static final int DEFAULT_MAX_CONCURRENT_CREATES = 3;

  static final Duration DEFAULT_MAX_ACQUIRE_TIME = Duration.ofSeconds(30);
  static final Duration DEFAULT_MAX_CREATE_CONNECTION_TIME = Duration.ofSeconds(10);
  static final Duration DEFAULT_MAX_CLOSE_TIME = Duration.ofSeconds(5);

  private static final AtomicInteger POOL_COUNTER = new AtomicInteger();

  private final ConnectionFactory factory;
  private @Nullable String poolName;
  private int maxSize = DEFAULT_MAX_SIZE;
  private @Nullable Integer initialSize;
  private int minIdle;
  private int maxPendingAcquires = Integer.MAX_VALUE;
  private Duration maxAcquireTime = DEFAULT_MAX_ACQUIRE_TIME;
  private Duration maxCreateConnectionTime = DEFAULT_MAX_CREATE_CONNECTION_TIME;
  private @Nullable Integer maxConcurrentCreates;
  private Duration maxCloseTime = DEFAULT_MAX_CLOSE_TIME;
  private @Nullable Scheduler scheduler;

  ConnectionPoolBuilder(ConnectionFactory factory) {
    this.factory = Objects.requireNonNull(factory, "connectionFactory must not be null");
    if (factory instanceof ConnectionPool) {
      throw new IllegalArgumentException(
          "connectionFactory is already a ConnectionPool ('" + ((ConnectionPool) factory).name()
              + "'): a pool must wrap a driver's ConnectionFactory, not another pool");
    }
  }

  /** The most connections open, opening or closing at once. Default 10; at least 1. */
  public ConnectionPoolBuilder maxSize(int maxSize) {
    this.maxSize = atLeast("maxSize", maxSize, 1);
    return this;
  }

  /**
   * Connections opened in the background as soon as the pool is built, and by {@link
   * ConnectionPool#warmup()}. Default 10 (or {@code maxSize} when smaller); 0 to open none up front.
   */
  public ConnectionPoolBuilder initialSize(int initialSize) {
    this.initialSize = atLeast("initialSize", initialSize, 0);
    return this;
  }

  /** Idle connections the pool keeps open. Default 0; at most {@code maxSize}. */
  public ConnectionPoolBuilder minIdle(int minIdle) {
    this.minIdle = atLeast("minIdle", minIdle, 0);
    return this;
  }

  /**
   * The most subscribers that may wait for a connection at once; the next one fails at once with
   * {@link PoolExhaustedException}. Default unbounded; at least 1.
   */
  public ConnectionPoolBuilder maxPendingAcquires(int maxPendingAcquires) {
    this.maxPendingAcquires = atLeast("maxPendingAcquires", maxPendingAcquires, 1);
    return this;
  }

  /**
   * The bound on a whole acquire: waiting in the queue, opening a connection, validating it.
   * Default 30 s; must be positive.
   */
  public ConnectionPoolBuilder maxAcquireTime(Duration maxAcquireTime) {
    this.maxAcquireTime = positive("maxAcquireTime", maxAcquireTime);
    return this;
  }

  /**
   * The bound on opening one physical connection; a slower attempt is cancelled and counts as a
   * failed attempt. Default 10 s; must be positive.
   */
  public ConnectionPoolBuilder maxCreateConnectionTime(Duration maxCreateConnectionTime) {
    this.maxCreateConnectionTime = positive("maxCreateConnectionTime", maxCreateConnectionTime);
    return this;
  }

  /**
   * How many physical connections may be opening at once. Default 3 (or {@code maxSize} when
   * smaller): see {@link #DEFAULT_MAX_CONCURRENT_CREATES}. Between 1 and {@code maxSize}.
   */
  public ConnectionPoolBuilder maxConcurrentCreates(int maxConcurrentCreates) {
    this.maxConcurrentCreates = atLeast("maxConcurrentCreates", maxConcurrentCreates, 1);
    return this;
  }

  /**
   * The bound on closing one physical connection. When it passes, the pool stops waiting and frees
   * the connection's slot. Default 5 s; must be positive.
   */
  public ConnectionPoolBuilder maxCloseTime(Duration maxCloseTime) {
    this.maxCloseTime = positive("maxCloseTime", maxCloseTime);
    return this;
  }

  /** The pool's name in errors, logs and meters. Default {@code lagoon-N}; must not be blank. */
  public ConnectionPoolBuilder poolName(String poolName) {
    Objects.requireNonNull(poolName, "poolName must not be null");
    if (poolName.isBlank()) {
      throw new IllegalArgumentException("poolName ('" + poolName + "') must not be blank");
    }
    this.poolName = poolName;
    return this;
  }

  /**
   * The scheduler on which timeouts and housekeeping run. Default {@link Schedulers#parallel()},
   * looked up when {@link #build()} runs (so {@code StepVerifier.withVirtualTime} can replace it).
   * The pool reads time from this scheduler when it keeps its own clock (as a virtual-time scheduler
   * does), else from {@link System#nanoTime()}.
   */
  public ConnectionPoolBuilder scheduler(Scheduler scheduler) {
    this.scheduler = Objects.requireNonNull(scheduler, "scheduler must not be null");
    return this;
  }

  /**
   * Checks the configuration and builds a pool, which at once starts opening {@code initialSize}
   * connections in the background. Never blocks.
   *
   * @throws IllegalArgumentException if options contradict each other
   */
  public ConnectionPool build() {
    return new ConnectionPool(config());
  }

  PoolConfig config() {
    int initial = initialSize != null ? initialSize : Math.min(DEFAULT_INITIAL_SIZE, maxSize);
    atMost("initialSize", initial, "maxSize", maxSize);
    atMost("minIdle", minIdle, "maxSize", maxSize);
    int creates = maxConcurrentCreates != null
        ? maxConcurrentCreates : Math.min(DEFAULT_MAX_CONCURRENT_CREATES, maxSize);
    atMost("maxConcurrentCreates", creates, "maxSize", maxSize);
    String name = poolName != null ? poolName : "lagoon-" + POOL_COUNTER.incrementAndGet();
    return new PoolConfig(factory, name, maxSize, initial, minIdle, maxPendingAcquires,
        maxAcquireTime, maxCreateConnectionTime, creates, maxCloseTime,
        scheduler != null ? scheduler : Schedulers.parallel());
  }

  private static int atLeast(String option, int value, int min) {
    if (value < min) {
      throw new IllegalArgumentException(option + " (" + value + ") must be >= " + min);
    }
    return value;
  }

  private static void atMost(String option, int value, String otherOption, int other) {
    if (value > other) {
      throw new IllegalArgumentException(
          option + " (" + value + ") must be <= " + otherOption + " (" + other + ")");
    }
  }

  private static Duration positive(String option, Duration value) {
    Objects.requireNonNull(value, () -> option + " must not be null");
    if (value.isNegative() || value.isZero()) {
      throw new IllegalArgumentException(option + " (" + value + ") must be positive");
    }
    return value;
  }
}
