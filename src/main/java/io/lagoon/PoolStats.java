package io.lagoon;

/**
 * A snapshot of a pool's state, taken by {@link ConnectionPool#stats()}.
 *
 * <p>The gauges come from one pass over the pool's connection slots, so they always add up:
 * {@code allocated = idle + acquired + other}, where {@code other} counts connections being opened,
 * validated, reset or closed. The counters are cumulative since the pool was built.
 *
 * <p>Immutable and thread-safe.
 *
 * @param poolName the pool's name
 * @param maxSize the most connections the pool may hold (open, opening or closing)
 * @param allocated connections that hold a slot: open, being opened or being closed
 * @param idle open connections ready to be lent
 * @param acquired connections lent to subscribers
 * @param pending subscribers waiting for a connection
 * @param acquires connections lent since the pool was built
 * @param timeouts acquires that failed with {@link PoolAcquireTimeoutException}
 * @param rejections acquires refused with {@link PoolExhaustedException}
 * @param created physical connections opened
 * @param closed physical connections closed
 * @param createFailures attempts to open a physical connection that failed or timed out
 * @param unavailable acquires that failed with {@link PoolUnavailableException} (database down)
 * @param abandoned lent connections the pool took back and closed because their handle was
 *     garbage-collected without {@code close()}
 * @param leaks lends that lasted longer than {@code leakDetectionThreshold} and were reported as
 *     possible leaks (0 while leak detection is off)
 */
public record PoolStats(
    String poolName,
    int maxSize,
    int allocated,
    int idle,
    int acquired,
    int pending,
    long acquires,
    long timeouts,
    long rejections,
    long created,
    long closed,
    long createFailures,
    long unavailable,
    long abandoned,
    long leaks) {

  @Override
  public String toString() {
    return "maxSize=" + maxSize + ", allocated=" + allocated + ", idle=" + idle + ", acquired="
        + acquired + ", pending=" + pending + ", acquires=" + acquires + ", timeouts=" + timeouts
        + ", rejections=" + rejections + ", created=" + created + ", closed=" + closed
        + ", createFailures=" + createFailures + ", unavailable=" + unavailable + ", abandoned="
        + abandoned + ", leaks=" + leaks;
  }
}
