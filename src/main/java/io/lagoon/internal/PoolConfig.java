package io.lagoon.internal;

import io.r2dbc.spi.ConnectionFactory;
import java.time.Duration;
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
 * @param maxAcquireTime the bound on one whole acquire
 * @param maxCreateConnectionTime the bound on opening one physical connection
 * @param maxConcurrentCreates the most physical connections being opened at once
 * @param maxCloseTime the bound on closing one physical connection
 * @param scheduler where timers and housekeeping run
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
    Scheduler scheduler) {}
