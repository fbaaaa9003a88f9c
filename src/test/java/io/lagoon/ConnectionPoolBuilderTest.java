package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.internal.PoolConfig;
import io.lagoon.testing.FakeConnectionFactory;
import java.time.Duration;
import java.util.List;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

class ConnectionPoolBuilderTest {

  private final FakeConnectionFactory factory = new FakeConnectionFactory();

  private void rejects(Consumer<ConnectionPoolBuilder> config, String message) {
    assertThatThrownBy(() -> {
      ConnectionPoolBuilder b = ConnectionPool.builder(factory);
      config.accept(b);
      b.config();
    }).isInstanceOf(IllegalArgumentException.class).hasMessage(message);
  }

  @Test
  void defaultsAreDocumentedValues() {
    PoolConfig c = ConnectionPool.builder(factory).config();
    assertThat(c.maxSize()).isEqualTo(10);
    assertThat(c.initialSize()).isEqualTo(10);
    assertThat(c.minIdle()).isZero();
    assertThat(c.maxPendingAcquires()).isEqualTo(Integer.MAX_VALUE);
    assertThat(c.maxAcquireTime()).isEqualTo(Duration.ofSeconds(30));
    assertThat(c.maxCreateConnectionTime()).isEqualTo(Duration.ofSeconds(10));
    assertThat(c.maxConcurrentCreates()).isEqualTo(3);
    assertThat(c.maxCloseTime()).isEqualTo(Duration.ofSeconds(5));
    assertThat(c.poolName()).startsWith("lagoon-");
  }

  @Test
  void derivedDefaultsFollowASmallMaxSize() {
    PoolConfig c = ConnectionPool.builder(factory).maxSize(2).config();
    assertThat(c.initialSize()).isEqualTo(2);
    assertThat(c.maxConcurrentCreates()).isEqualTo(2);
  }

  @Test
  void singleValuesAreCheckedInTheSetter() {
    rejects(b -> b.maxSize(0), "maxSize (0) must be >= 1");
    rejects(b -> b.initialSize(-1), "initialSize (-1) must be >= 0");
    rejects(b -> b.minIdle(-3), "minIdle (-3) must be >= 0");
    rejects(b -> b.maxPendingAcquires(0), "maxPendingAcquires (0) must be >= 1");
    rejects(b -> b.maxConcurrentCreates(0), "maxConcurrentCreates (0) must be >= 1");
    rejects(b -> b.maxSize(-1), "maxSize (-1) must be >= 1: r2dbc-pool's -1 (unbounded) has no"
        + " equivalent, a Lagoon pool is always bounded");
    rejects(b -> b.maxAcquireTime(Duration.ZERO),
        "maxAcquireTime (PT0S) must be positive, or negative for no limit");
    rejects(b -> b.maxCreateConnectionTime(Duration.ZERO),
        "maxCreateConnectionTime (PT0S) must be positive, or negative for no limit");
    rejects(b -> b.maxCloseTime(Duration.ofSeconds(-1)), "maxCloseTime (PT-1S) must be positive");
    rejects(b -> b.maxCloseTime(Duration.ZERO), "maxCloseTime (PT0S) must be positive");
    rejects(b -> b.poolName("  "), "poolName ('  ') must not be blank");
  }

  @Test
  void lifecycleOptionsAreChecked() {
    rejects(b -> b.validationQuery(" "), "validationQuery (' ') must not be blank");
    rejects(b -> b.maxValidationTime(Duration.ZERO),
        "maxValidationTime (PT0S) must be positive, or negative for no limit");
    rejects(b -> b.validationSkipWindow(Duration.ofMillis(-1)),
        "validationSkipWindow (PT-0.001S) must not be negative");
    rejects(b -> b.maxIdleTime(Duration.ZERO),
        "maxIdleTime (PT0S) must be positive, or negative for no limit");
    rejects(b -> b.maxLifeTime(Duration.ZERO),
        "maxLifeTime (PT0S) must be positive, or negative for no limit");
    rejects(b -> b.keepaliveInterval(Duration.ofSeconds(-1)),
        "keepaliveInterval (PT-1S) must not be negative (zero disables keepalive)");
    rejects(b -> b.backgroundEvictionInterval(Duration.ofMillis(99)),
        "backgroundEvictionInterval (PT0.099S) must be at least PT0.1S, or zero or negative for"
            + " the default");
    rejects(b -> b.acquireRetry(-1), "acquireRetry (-1) must be >= 0");
    rejects(b -> b.leakDetectionThreshold(Duration.ofSeconds(-1)),
        "leakDetectionThreshold (PT-1S) must not be negative (zero disables leak detection)");
    rejects(b -> b.maxLifeTime(Duration.ofMinutes(2)).keepaliveInterval(Duration.ofMinutes(2)),
        "keepaliveInterval (PT2M) must be < maxLifeTime (PT2M), or zero to disable keepalive");
  }

  @Test
  void lifecycleDefaults() {
    PoolConfig c = ConnectionPool.builder(factory).config();
    assertThat(c.validationDepth()).isEqualTo(io.r2dbc.spi.ValidationDepth.LOCAL);
    assertThat(c.validationQuery()).isNull();
    assertThat(c.maxValidationTime()).isEqualTo(Duration.ofSeconds(5));
    assertThat(c.validationSkipWindow()).isEqualTo(Duration.ofMillis(500));
    assertThat(c.maxIdleTime()).isEqualTo(Duration.ofMinutes(30));
    assertThat(c.maxLifeTime()).isEqualTo(Duration.ofMinutes(30));
    assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofMinutes(2));
    assertThat(c.backgroundEvictionInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(c.acquireRetry()).isZero();
    assertThat(c.leakDetectionThreshold()).as("leak detection off").isZero();
    assertThat(c.leakDetection()).isFalse();
    assertThat(ConnectionPool.builder(factory).keepaliveInterval(Duration.ZERO).config()
        .keepaliveInterval()).isZero();
  }

  @Test
  void anUnsetHousekeepingIntervalIsAtMostHalfTheLeakDetectionThreshold() {
    PoolConfig c = ConnectionPool.builder(factory).leakDetectionThreshold(Duration.ofSeconds(10))
        .config();
    assertThat(c.leakDetection()).isTrue();
    assertThat(c.leakDetectionThreshold()).isEqualTo(Duration.ofSeconds(10));
    assertThat(c.backgroundEvictionInterval()).as("a leak is reported at most 5 s late")
        .isEqualTo(Duration.ofSeconds(5));
    assertThat(ConnectionPool.builder(factory).leakDetectionThreshold(Duration.ofMillis(150))
        .config().backgroundEvictionInterval()).as("never below the minimum")
        .isEqualTo(Duration.ofMillis(100));
    assertThat(ConnectionPool.builder(factory).leakDetectionThreshold(Duration.ofHours(1))
        .config().backgroundEvictionInterval()).as("only ever lowered")
        .isEqualTo(Duration.ofSeconds(30));
    assertThat(ConnectionPool.builder(factory).leakDetectionThreshold(Duration.ofSeconds(10))
        .backgroundEvictionInterval(Duration.ofMinutes(1)).config().backgroundEvictionInterval())
        .as("an interval that is set stays").isEqualTo(Duration.ofMinutes(1));
    assertThat(ConnectionPool.builder(factory).leakDetectionThreshold(Duration.ZERO).config()
        .leakDetection()).as("zero: off").isFalse();
  }

  @Test
  void combinationsAreCheckedInBuild() {
    rejects(b -> b.maxSize(5).initialSize(6), "initialSize (6) must be <= maxSize (5)");
    rejects(b -> b.maxSize(5).minIdle(12), "minIdle (12) must be <= maxSize (5)");
    rejects(b -> b.maxSize(4).maxConcurrentCreates(5), "maxConcurrentCreates (5) must be <= maxSize (4)");
    // the order in which they were set does not matter
    rejects(b -> b.minIdle(12).maxSize(5), "minIdle (12) must be <= maxSize (5)");
    rejects(b -> b.keepaliveInterval(Duration.ofMinutes(3)).maxLifeTime(Duration.ofMinutes(3)),
        "keepaliveInterval (PT3M) must be < maxLifeTime (PT3M), or zero to disable keepalive");
  }

  // ---------------------------------------------------------------- defaults adapt

  @Test
  void anUnsetMaxSizeRisesToTheSizesThatAreSet() {
    PoolConfig byMinIdle = ConnectionPool.builder(factory).minIdle(15).config();
    assertThat(byMinIdle.maxSize()).isEqualTo(15);
    assertThat(byMinIdle.initialSize()).isEqualTo(10);
    assertThat(byMinIdle.maxConcurrentCreates()).isEqualTo(3);

    PoolConfig byInitial = ConnectionPool.builder(factory).initialSize(20).config();
    assertThat(byInitial.maxSize()).isEqualTo(20);
    assertThat(byInitial.initialSize()).isEqualTo(20);

    PoolConfig byCreates = ConnectionPool.builder(factory).maxConcurrentCreates(12).config();
    assertThat(byCreates.maxSize()).isEqualTo(12);
    assertThat(byCreates.maxConcurrentCreates()).isEqualTo(12);

    PoolConfig largest = ConnectionPool.builder(factory).initialSize(11).minIdle(14)
        .maxConcurrentCreates(4).config();
    assertThat(largest.maxSize()).isEqualTo(14);
    assertThat(ConnectionPool.builder(factory).minIdle(4).config().maxSize())
        .as("never below the default").isEqualTo(10);
  }

  @Test
  void theKeepaliveDefaultMakesWayForAShortLifetimeOrIdleTime() {
    PoolConfig life = ConnectionPool.builder(factory).maxLifeTime(Duration.ofMinutes(1)).config();
    assertThat(life.maxLifeTime()).isEqualTo(Duration.ofMinutes(1));
    assertThat(life.keepaliveInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(life.backgroundEvictionInterval()).as("half the keepalive")
        .isEqualTo(Duration.ofSeconds(15));

    PoolConfig idle = ConnectionPool.builder(factory).maxIdleTime(Duration.ofSeconds(90)).config();
    assertThat(idle.keepaliveInterval()).isEqualTo(Duration.ofSeconds(45));
    assertThat(idle.backgroundEvictionInterval()).isEqualTo(Duration.ofMillis(22_500));

    PoolConfig longer = ConnectionPool.builder(factory).maxLifeTime(Duration.ofHours(2)).config();
    assertThat(longer.keepaliveInterval()).as("only ever lowered").isEqualTo(Duration.ofMinutes(2));
    assertThat(longer.backgroundEvictionInterval()).isEqualTo(Duration.ofSeconds(30));
  }

  @Test
  void theLifetimeDefaultMakesWayForALongKeepalive() {
    PoolConfig c = ConnectionPool.builder(factory).keepaliveInterval(Duration.ofHours(1)).config();
    assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofHours(1));
    assertThat(c.maxLifeTime()).isEqualTo(Duration.ofHours(2));
    PoolConfig off = ConnectionPool.builder(factory).keepaliveInterval(Duration.ZERO)
        .maxLifeTime(Duration.ofSeconds(1)).config();
    assertThat(off.keepaliveInterval()).isZero();
  }

  @Test
  void housekeepingRunsAtLeastTenTimesASecondAtMost() {
    PoolConfig c = ConnectionPool.builder(factory).maxLifeTime(Duration.ofMillis(50)).config();
    assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofMillis(25));
    assertThat(c.backgroundEvictionInterval()).isEqualTo(Duration.ofMillis(100));
    assertThat(ConnectionPool.builder(factory)
        .backgroundEvictionInterval(Duration.ofMillis(100)).config()
        .backgroundEvictionInterval()).isEqualTo(Duration.ofMillis(100));
  }

  @Test
  void aZeroOrNegativeBackgroundEvictionIntervalKeepsTheDefault() {
    assertThat(ConnectionPool.builder(factory).backgroundEvictionInterval(Duration.ZERO).config()
        .backgroundEvictionInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(ConnectionPool.builder(factory).backgroundEvictionInterval(Duration.ofSeconds(-1))
        .config().backgroundEvictionInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(ConnectionPool.builder(factory).maxLifeTime(Duration.ofMinutes(1))
        .backgroundEvictionInterval(Duration.ofMinutes(5)).backgroundEvictionInterval(Duration.ZERO)
        .config().backgroundEvictionInterval()).as("the adapted default").isEqualTo(Duration.ofSeconds(15));
  }

  // ---------------------------------------------------------------- no limit

  @Test
  void negativeTimeoutsMeanNoLimit() {
    Duration minus = Duration.ofSeconds(-1);
    PoolConfig c = ConnectionPool.builder(factory).maxAcquireTime(minus)
        .maxCreateConnectionTime(minus).maxValidationTime(Duration.ofMillis(-1))
        .maxIdleTime(minus).maxLifeTime(Duration.ofDays(-3)).config();
    assertThat(ConnectionPoolBuilder.NO_LIMIT).isEqualTo(Duration.ofDays(36_500));
    assertThat(List.of(c.maxAcquireTime(), c.maxCreateConnectionTime(), c.maxValidationTime(),
        c.maxIdleTime(), c.maxLifeTime())).containsOnly(ConnectionPoolBuilder.NO_LIMIT);
    assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofMinutes(2));
    assertThat(c.backgroundEvictionInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(c.toString()).contains("maxAcquireTime=none", "maxLifeTime=none",
        "maxIdleTime=none", "maxValidationTime=none", "maxCreateConnectionTime=none");
  }

  @Test
  void durationsBeyondTheNoLimitMeanNoLimitSoTheirNanosecondsNeverOverflow() {
    Duration huge = Duration.ofDays(1_000_000); // more nanoseconds than a long holds
    PoolConfig c = ConnectionPool.builder(factory).maxAcquireTime(huge).maxLifeTime(huge)
        .maxCloseTime(huge).validationSkipWindow(huge).backgroundEvictionInterval(huge)
        .keepaliveInterval(Duration.ofDays(500_000)).config();
    assertThat(List.of(c.maxAcquireTime(), c.maxLifeTime(), c.maxCloseTime(),
        c.validationSkipWindow(), c.backgroundEvictionInterval()))
        .containsOnly(ConnectionPoolBuilder.NO_LIMIT);
    assertThat(c.maxAcquireTime().toNanos()).isPositive();
    assertThat(c.keepaliveInterval()).isEqualTo(ConnectionPoolBuilder.NO_LIMIT);
  }

  @Test
  void aPoolCannotWrapAPool() {
    ConnectionPool inner = ConnectionPool.builder(factory).initialSize(0).poolName("inner").build();
    try {
      assertThatThrownBy(() -> ConnectionPool.builder(inner))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("already a ConnectionPool ('inner')");
    } finally {
      inner.dispose();
    }
  }

  @Test
  void nullsAreNamed() {
    assertThatThrownBy(() -> ConnectionPool.builder(factory).maxAcquireTime(null))
        .isInstanceOf(NullPointerException.class).hasMessage("maxAcquireTime must not be null");
  }
}
