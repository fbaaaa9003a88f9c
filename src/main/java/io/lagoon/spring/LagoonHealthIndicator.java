package io.lagoon.spring;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import io.lagoon.internal.PoolAccess;
import io.lagoon.internal.PoolCore;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.TimeoutException;
import org.springframework.boot.health.contributor.Health;
import org.springframework.boot.health.contributor.ReactiveHealthIndicator;
import reactor.core.publisher.Mono;

/**
 * The health of a Lagoon pool, with its stats as details. It answers from the pool's state when it
 * can, without I/O:
 *
 * <ul>
 *   <li>DOWN when the pool is closed, or down (no connection open and the last connect failed:
 *       the connect error is the detail), so a database that refuses connections shows at once;
 *   <li>UP when a connection is lent (a busy pool is not a sick one) or an idle connection was seen
 *       working within the last second;
 *   <li>UNKNOWN while subscribers wait for connections being opened: checking would take a
 *       connection away from them.
 * </ul>
 *
 * <p>Otherwise (nothing lent, nobody waiting, idle connections quiet for a while) it borrows a
 * connection and validates it with a round trip, bounded by its own {@code timeout} (default 1 s,
 * {@code lagoon.health.timeout}), not by {@code maxAcquireTime}: DOWN if that fails or is slower.
 *
 * <p>Thread-safe.
 */
public class LagoonHealthIndicator implements ReactiveHealthIndicator {

  /** An idle connection that worked this recently needs no round trip. */
  static final long RECENT_NANOS = Duration.ofSeconds(1).toNanos();

  private final ConnectionPool pool;
  private final Duration timeout;

  public LagoonHealthIndicator(ConnectionPool pool, Duration timeout) {
    this.pool = Objects.requireNonNull(pool, "pool must not be null");
    Objects.requireNonNull(timeout, "timeout must not be null");
    if (timeout.isNegative() || timeout.isZero()) {
      throw new IllegalArgumentException("lagoon.health.timeout (" + timeout
          + ") must be positive");
    }
    this.timeout = timeout;
  }

  @Override
  public Mono<Health> health() {
    return Mono.defer(() -> {
      PoolCore core = PoolAccess.core(pool);
      PoolStats stats = pool.stats();
      if (pool.isDisposed()) {
        return Mono.just(details(Health.down(), stats).withDetail("reason", "the pool is closed")
            .build());
      }
      Throwable down = core.downCause();
      if (down != null) {
        return Mono.just(refused(stats, down));
      }
      if (stats.acquired() > 0) {
        return Mono.just(details(Health.up(), stats).withDetail("check", "connections are lent")
            .build());
      }
      long fresh = core.freshestIdleNanos();
      if (fresh >= 0 && fresh <= RECENT_NANOS) {
        return Mono.just(details(Health.up(), stats)
            .withDetail("check", "an idle connection worked " + fresh / 1_000_000 + " ms ago")
            .build());
      }
      if (stats.pending() > 0) {
        return Mono.just(details(Health.unknown(), stats).withDetail("check",
            "subscribers wait for connections being opened; not taking one from them").build());
      }
      return probe();
    });
  }

  /** Borrows a connection and validates it with a round trip, within {@code timeout}. */
  private Mono<Health> probe() {
    return Mono.usingWhen(pool.create(),
            (Connection c) -> Mono.from(c.validate(ValidationDepth.REMOTE)),
            Connection::close, (c, err) -> c.close(), Connection::close)
        .timeout(timeout)
        .map(valid -> valid
            ? details(Health.up(), pool.stats()).withDetail("check", "validated a connection")
                .build()
            : details(Health.down(), pool.stats())
                .withDetail("reason", "a connection failed validation").build())
        .onErrorResume(e -> {
          // The pool may have gone down while this check waited for its first connect.
          Throwable down = PoolAccess.core(pool).downCause();
          if (down != null || e instanceof io.lagoon.PoolUnavailableException) {
            return Mono.just(refused(pool.stats(), down != null ? down
                : e.getCause() != null ? e.getCause() : e));
          }
          return Mono.just(details(Health.down(), pool.stats())
              .withDetail("reason", e instanceof TimeoutException
                  ? "no valid connection within lagoon.health.timeout " + timeout
                  : "could not get a valid connection")
              .withDetail("error", e.getClass().getName() + ": " + e.getMessage()).build());
        });
  }

  private static Health refused(PoolStats stats, Throwable connectError) {
    return details(Health.down(), stats).withDetail("reason",
            "the database refuses connections: none is open and the last connect failed")
        .withDetail("error", connectError.getClass().getName() + ": " + connectError.getMessage())
        .build();
  }

  private static Health.Builder details(Health.Builder b, PoolStats s) {
    return b.withDetail("pool", s.poolName())
        .withDetail("maxSize", s.maxSize())
        .withDetail("allocated", s.allocated())
        .withDetail("idle", s.idle())
        .withDetail("acquired", s.acquired())
        .withDetail("pending", s.pending())
        .withDetail("acquires", s.acquires())
        .withDetail("timeouts", s.timeouts())
        .withDetail("rejections", s.rejections())
        .withDetail("createFailures", s.createFailures())
        .withDetail("unavailable", s.unavailable());
  }
}
