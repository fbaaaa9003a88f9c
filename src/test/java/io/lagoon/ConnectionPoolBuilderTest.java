package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.internal.PoolConfig;
import io.lagoon.testing.FakeConnectionFactory;
import java.time.Duration;
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
    rejects(b -> b.maxAcquireTime(Duration.ZERO), "maxAcquireTime (PT0S) must be positive");
    rejects(b -> b.maxAcquireTime(Duration.ofMillis(-5)), "maxAcquireTime (PT-0.005S) must be positive");
    rejects(b -> b.maxCreateConnectionTime(Duration.ZERO),
        "maxCreateConnectionTime (PT0S) must be positive");
    rejects(b -> b.maxCloseTime(Duration.ofSeconds(-1)), "maxCloseTime (PT-1S) must be positive");
    rejects(b -> b.poolName("  "), "poolName ('  ') must not be blank");
  }

  @Test
  void lifecycleOptionsAreChecked() {
    rejects(b -> b.validationQuery(" "), "validationQuery (' ') must not be blank");
    rejects(b -> b.maxValidationTime(Duration.ZERO), "maxValidationTime (PT0S) must be positive");
    rejects(b -> b.validationSkipWindow(Duration.ofMillis(-1)),
        "validationSkipWindow (PT-0.001S) must not be negative");
    rejects(b -> b.maxIdleTime(Duration.ZERO), "maxIdleTime (PT0S) must be positive");
    rejects(b -> b.maxLifeTime(Duration.ofMinutes(-1)), "maxLifeTime (PT-1M) must be positive");
    rejects(b -> b.keepaliveInterval(Duration.ofSeconds(-1)),
        "keepaliveInterval (PT-1S) must not be negative");
    rejects(b -> b.backgroundEvictionInterval(Duration.ZERO),
        "backgroundEvictionInterval (PT0S) must be positive");
    rejects(b -> b.acquireRetry(-1), "acquireRetry (-1) must be >= 0");
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
    assertThat(ConnectionPool.builder(factory).keepaliveInterval(Duration.ZERO).config()
        .keepaliveInterval()).isZero();
  }

  @Test
  void combinationsAreCheckedInBuild() {
    rejects(b -> b.maxSize(5).initialSize(6), "initialSize (6) must be <= maxSize (5)");
    rejects(b -> b.maxSize(5).minIdle(12), "minIdle (12) must be <= maxSize (5)");
    rejects(b -> b.maxSize(4).maxConcurrentCreates(5), "maxConcurrentCreates (5) must be <= maxSize (4)");
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
