package io.lagoon.spring;

import io.lagoon.SessionReset;
import java.time.Duration;
import org.jspecify.annotations.Nullable;
import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * Lagoon's properties under {@code lagoon.*}. The pool options that Spring Boot already defines
 * ({@code spring.r2dbc.pool.max-size}, ...) stay there and keep their meaning; {@code lagoon.pool.*}
 * holds Lagoon's other options. An option left unset takes the pool's default (see the README's
 * options table); {@code null} here means unset.
 *
 * <p>Not thread-safe: bound once by Spring at startup.
 */
@ConfigurationProperties("lagoon")
public class LagoonProperties {

  private final Pool pool = new Pool();
  private final Metrics metrics = new Metrics();
  private final Health health = new Health();

  /**
   * How long connections lent when the application context closes may still finish their work
   * before the pool closes them under their borrowers. The pool closes after the web server's
   * graceful shutdown.
   */
  private Duration shutdownGrace = Duration.ofSeconds(5);

  public Pool getPool() {
    return pool;
  }

  public Metrics getMetrics() {
    return metrics;
  }

  public Health getHealth() {
    return health;
  }

  public Duration getShutdownGrace() {
    return shutdownGrace;
  }

  public void setShutdownGrace(Duration shutdownGrace) {
    this.shutdownGrace = shutdownGrace;
  }

  /** Lagoon's pool options that {@code spring.r2dbc.pool.*} does not have. */
  public static class Pool {

    /** Name of the pool in errors, logs and meters. Default: the bean name, connectionFactory. */
    private @Nullable String poolName;

    /** Most subscribers waiting for a connection at once; beyond, acquires fail at once. Default: unbounded. */
    private @Nullable Integer maxPendingAcquires;

    /** Most connections being opened at once. Default: 3, or max-size if smaller. */
    private @Nullable Integer maxConcurrentCreates;

    /** Bound on closing one physical connection. Default: 5s. */
    private @Nullable Duration maxCloseTime;

    /** How often idle connections are validated; 0 disables. Default: 2m. */
    private @Nullable Duration keepaliveInterval;

    /** A connection used or validated this recently is lent without a round trip. Default: 500ms. */
    private @Nullable Duration validationSkipWindow;

    /** When session state changed through SQL is undone on release. Default: auto. */
    private @Nullable SessionReset sessionReset;

    /** How often housekeeping runs (idle and lifetime retirement, keepalive, min-idle). Default: 30s. */
    private @Nullable Duration backgroundEvictionInterval;

    /** Whether to register the pool's MXBean. Default: false. */
    private @Nullable Boolean registerJmx;

    /**
     * A connection lent longer than this is logged as a possible leak, with the stack that borrowed
     * it. Default: 0, off.
     */
    private @Nullable Duration leakDetectionThreshold;

    public @Nullable String getPoolName() {
      return poolName;
    }

    public void setPoolName(@Nullable String poolName) {
      this.poolName = poolName;
    }

    public @Nullable Integer getMaxPendingAcquires() {
      return maxPendingAcquires;
    }

    public void setMaxPendingAcquires(@Nullable Integer maxPendingAcquires) {
      this.maxPendingAcquires = maxPendingAcquires;
    }

    public @Nullable Integer getMaxConcurrentCreates() {
      return maxConcurrentCreates;
    }

    public void setMaxConcurrentCreates(@Nullable Integer maxConcurrentCreates) {
      this.maxConcurrentCreates = maxConcurrentCreates;
    }

    public @Nullable Duration getMaxCloseTime() {
      return maxCloseTime;
    }

    public void setMaxCloseTime(@Nullable Duration maxCloseTime) {
      this.maxCloseTime = maxCloseTime;
    }

    public @Nullable Duration getKeepaliveInterval() {
      return keepaliveInterval;
    }

    public void setKeepaliveInterval(@Nullable Duration keepaliveInterval) {
      this.keepaliveInterval = keepaliveInterval;
    }

    public @Nullable Duration getValidationSkipWindow() {
      return validationSkipWindow;
    }

    public void setValidationSkipWindow(@Nullable Duration validationSkipWindow) {
      this.validationSkipWindow = validationSkipWindow;
    }

    public @Nullable SessionReset getSessionReset() {
      return sessionReset;
    }

    public void setSessionReset(@Nullable SessionReset sessionReset) {
      this.sessionReset = sessionReset;
    }

    public @Nullable Duration getBackgroundEvictionInterval() {
      return backgroundEvictionInterval;
    }

    public void setBackgroundEvictionInterval(@Nullable Duration backgroundEvictionInterval) {
      this.backgroundEvictionInterval = backgroundEvictionInterval;
    }

    public @Nullable Boolean getRegisterJmx() {
      return registerJmx;
    }

    public void setRegisterJmx(@Nullable Boolean registerJmx) {
      this.registerJmx = registerJmx;
    }

    public @Nullable Duration getLeakDetectionThreshold() {
      return leakDetectionThreshold;
    }

    public void setLeakDetectionThreshold(@Nullable Duration leakDetectionThreshold) {
      this.leakDetectionThreshold = leakDetectionThreshold;
    }
  }

  /** Meters, when Micrometer and a MeterRegistry bean are present. */
  public static class Metrics {

    /** Whether to bind the pools' meters to the application's MeterRegistry. */
    private boolean enabled = true;

    /** Meter names: spring-boot (r2dbc.pool.*) or open-telemetry (db.client.connection.*). */
    private Naming naming = Naming.SPRING_BOOT;

    public boolean isEnabled() {
      return enabled;
    }

    public void setEnabled(boolean enabled) {
      this.enabled = enabled;
    }

    public Naming getNaming() {
      return naming;
    }

    public void setNaming(Naming naming) {
      this.naming = naming;
    }

    /**
     * Meter names, as {@code io.lagoon.micrometer.LagoonMetrics.Naming} (not referred to here, so
     * that these properties bind without Micrometer on the class path).
     */
    public enum Naming {
      /** Spring Boot's names: r2dbc.pool.*, tag name. */
      SPRING_BOOT,
      /** OpenTelemetry's names: db.client.connection.*, tag pool.name. */
      OPEN_TELEMETRY
    }
  }

  /** The r2dbc health contributor, when Spring Boot's health support is present. */
  public static class Health {

    /**
     * Bound on the health check's own round trip, made only when no connection is lent and none
     * was seen working in the last second; slower counts as DOWN.
     */
    private Duration timeout = Duration.ofSeconds(1);

    public Duration getTimeout() {
      return timeout;
    }

    public void setTimeout(Duration timeout) {
      this.timeout = timeout;
    }
  }
}
