package io.lagoon.internal;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.scheduler.Scheduler;

/**
 * The pool's immutable configuration, checked by {@link io.lagoon.ConnectionPoolBuilder}.
 *
 * @param factory the driver's factory that opens physical connections
 * @param poolName the name used in errors, logs and meters
 * @param maxSize the most connections open, opening or closing at once
 * @param initialSize connections opened in the background at build time and by warmup()
 * @param minIdle idle connections kept open
 * @param maxPendingAcquires the most subscribers waiting at once
 * <p>Durations of {@link #NO_LIMIT} or more mean no limit: see {@link #NO_LIMIT}.
 *
 * @param maxAcquireTime the bound on one whole acquire
 * @param maxCreateConnectionTime the bound on opening one physical connection
 * @param maxConcurrentCreates the most physical connections being opened at once
 * @param maxCloseTime the bound on closing one physical connection
 * @param scheduler where timers and housekeeping run
 * @param validationDepth how deeply validate() checks a connection
 * @param validationQuery the query that validates a connection instead of validate(), or null
 * @param maxValidationTime the bound on one validation and on the reset on release
 * @param validationSkipWindow a connection used or validated this recently is not re-validated
 * @param maxIdleTime idle connections beyond minIdle are closed after this
 * @param maxLifeTime connections are retired at this age, minus up to 2.5 % jitter
 * @param keepaliveInterval idle connections are validated this often (zero: never)
 * @param backgroundEvictionInterval how often housekeeping runs
 * @param acquireRetry connect failures a waiter tolerates before it fails early
 * @param postAllocate runs once on every new connection, or null
 * @param preRelease runs on every connection given back, before the reset, or null
 * @param registerJmx whether the pool registers its MXBean
 * @param sessionReset when session state changed through SQL is undone on release
 * @param leakDetectionThreshold a lend longer than this is logged as a possible leak, with its
 *     borrow site (zero: leak detection off)
 */
public record PoolConfig(
    ConnectionFactory factory,
    String poolName,
    int maxSize,
    int initialSize,
    int minIdle,
    int maxPendingAcquires,
    Duration maxAcquireTime,
    Duration maxCreateConnectionTime,
    int maxConcurrentCreates,
    Duration maxCloseTime,
    Scheduler scheduler,
    ValidationDepth validationDepth,
    @Nullable String validationQuery,
    Duration maxValidationTime,
    Duration validationSkipWindow,
    Duration maxIdleTime,
    Duration maxLifeTime,
    Duration keepaliveInterval,
    Duration backgroundEvictionInterval,
    int acquireRetry,
    @Nullable Function<? super Connection, ? extends Publisher<Void>> postAllocate,
    @Nullable Function<? super Connection, ? extends Publisher<Void>> preRelease,
    boolean registerJmx,
    io.lagoon.SessionReset sessionReset,
    Duration leakDetectionThreshold) {

  /**
   * The duration that stands for "no limit": 36,500 days. A negative {@code maxAcquireTime},
   * {@code maxCreateConnectionTime}, {@code maxValidationTime}, {@code maxIdleTime} or {@code
   * maxLifeTime} (r2dbc-pool's "no timeout") becomes this, and so does any duration at least this
   * long. No timer is armed for it, and in nanoseconds it stays far below {@code Long.MAX_VALUE}, so
   * deadlines computed from it never overflow: clock values are compared by subtraction, which is
   * exact for spans under 292 years.
   */
  public static final Duration NO_LIMIT = Duration.ofDays(36_500);

  /** Whether {@code d} means no limit (it is {@link #NO_LIMIT} or longer). */
  public static boolean isNoLimit(Duration d) {
    return d.compareTo(NO_LIMIT) >= 0;
  }

  /** Whether leak detection is on: {@code leakDetectionThreshold} is not zero. */
  public boolean leakDetection() {
    return !leakDetectionThreshold.isZero();
  }

  /** A duration as the configuration prints it: {@code none} for no limit. */
  static String show(Duration d) {
    return isNoLimit(d) ? "none" : d.toString();
  }

  /** The options, and the driver only by its class: a driver's toString may hold credentials. */
  @Override
  public String toString() {
    return "PoolConfig[poolName=" + poolName + ", driver=" + factory.getClass().getName()
        + ", maxSize=" + maxSize + ", initialSize=" + initialSize + ", minIdle=" + minIdle
        + ", maxPendingAcquires=" + maxPendingAcquires + ", maxAcquireTime="
        + show(maxAcquireTime) + ", maxCreateConnectionTime=" + show(maxCreateConnectionTime)
        + ", maxConcurrentCreates=" + maxConcurrentCreates + ", maxCloseTime="
        + show(maxCloseTime) + ", validationDepth=" + validationDepth + ", validationQuery="
        + validationQuery + ", maxValidationTime=" + show(maxValidationTime)
        + ", validationSkipWindow=" + show(validationSkipWindow) + ", maxIdleTime="
        + show(maxIdleTime) + ", maxLifeTime=" + show(maxLifeTime) + ", keepaliveInterval="
        + show(keepaliveInterval) + ", backgroundEvictionInterval="
        + show(backgroundEvictionInterval) + ", acquireRetry="
        + acquireRetry + ", postAllocate=" + (postAllocate != null) + ", preRelease="
        + (preRelease != null) + ", registerJmx=" + registerJmx + ", sessionReset=" + sessionReset
        + ", leakDetectionThreshold=" + show(leakDetectionThreshold) + "]";
  }
}
