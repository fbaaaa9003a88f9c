package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.internal.PoolConfig;
import io.lagoon.spring.ConnectionPoolBuilderCustomizer;
import io.lagoon.spring.LagoonAutoConfiguration;
import io.lagoon.spring.LagoonHealthAutoConfiguration;
import io.lagoon.spring.LagoonHealthIndicator;
import io.lagoon.spring.LagoonMetricsAutoConfiguration;
import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.RecordingDriver.RecordingFactory;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.ValidationDepth;
import io.r2dbc.spi.Wrapped;
import java.lang.reflect.Field;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.springframework.boot.autoconfigure.AutoConfigurations;
import org.springframework.boot.health.contributor.Health;
import org.springframework.boot.health.contributor.ReactiveHealthContributor;
import org.springframework.boot.health.contributor.Status;
import org.springframework.boot.r2dbc.OptionsCapableConnectionFactory;
import org.springframework.boot.r2dbc.autoconfigure.R2dbcAutoConfiguration;
import org.springframework.boot.r2dbc.autoconfigure.health.ConnectionFactoryHealthContributorAutoConfiguration;
import org.springframework.boot.r2dbc.autoconfigure.metrics.ConnectionPoolMetricsAutoConfiguration;
import org.springframework.boot.test.context.FilteredClassLoader;
import org.springframework.boot.test.context.runner.ApplicationContextRunner;
import org.springframework.r2dbc.core.DatabaseClient;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;

/**
 * The Spring Boot auto-configuration, with r2dbc-pool on the class path as the data starter puts
 * it there: the fake "recording" driver where only the configuration matters, PostgreSQL where
 * sessions do (each test's connections carry their own applicationName).
 */
class LagoonAutoConfigurationTest {

  private static final AutoConfigurations BOOT_AND_LAGOON = AutoConfigurations.of(
      R2dbcAutoConfiguration.class, ConnectionFactoryHealthContributorAutoConfiguration.class,
      ConnectionPoolMetricsAutoConfiguration.class, LagoonAutoConfiguration.class,
      LagoonHealthAutoConfiguration.class, LagoonMetricsAutoConfiguration.class);

  /** For PostgreSQL. */
  private final ApplicationContextRunner boot = new ApplicationContextRunner()
      .withConfiguration(BOOT_AND_LAGOON);

  /** For the fake driver, which Spring's DatabaseClient cannot serve (no bind markers). */
  private final ApplicationContextRunner runner =
      boot.withClassLoader(new FilteredClassLoader(DatabaseClient.class));

  private final String app = "lagoon-spring-" + UUID.randomUUID().toString().substring(0, 8);

  /** The options of the pool, read from the built pool itself. */
  private static PoolConfig config(ConnectionPool pool) throws ReflectiveOperationException {
    Field f = ConnectionPool.class.getDeclaredField("config");
    f.setAccessible(true);
    return (PoolConfig) f.get(pool);
  }

  /** The driver's options behind the pool (Spring Boot's wrapper keeps them). */
  private static ConnectionFactoryOptions driverOptions(ConnectionPool pool) {
    return OptionsCapableConnectionFactory.unwrapFrom(pool).getOptions();
  }

  // ------------------------------------------------------------------ which factory

  @Test
  void aPlainDriverUrlIsPooledByLagoonAndR2dbcPoolIsNowhere() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop")
        .run(context -> {
          assertThat(context).hasNotFailed().hasSingleBean(ConnectionFactory.class)
              .doesNotHaveBean(io.r2dbc.pool.ConnectionPool.class);
          ConnectionPool pool = context.getBean(ConnectionPool.class);
          assertThat(pool.name()).isEqualTo("connectionFactory");
          Object behind = pool.unwrap();
          while (behind instanceof Wrapped<?> w) {
            assertThat(behind).isNotInstanceOf(io.r2dbc.pool.ConnectionPool.class);
            behind = w.unwrap();
          }
          assertThat(behind).isInstanceOf(RecordingFactory.class);
          assertThat(((RecordingFactory) behind).options().getValue(ConnectionFactoryOptions.DRIVER))
              .isEqualTo("recording");
        });
  }

  @Test
  void lagoonAndR2dbcPoolUrlsAreLagoonPoolsWithTheirOptions() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:lagoon:recording://db/shop?maxSize=4")
        .run(context -> {
          ConnectionPool pool = context.getBean(ConnectionPool.class);
          assertThat(config(pool).maxSize()).isEqualTo(4);
          assertThat(driverOptions(pool).getValue(ConnectionFactoryOptions.DRIVER))
              .isEqualTo("recording");
          assertThat(driverOptions(pool).hasOption(Option.valueOf("maxSize"))).isFalse();
        });
    runner.withPropertyValues(
            "spring.r2dbc.url=r2dbc:pool:recording://db/shop?maxSize=6&poolName=legacy")
        .run(context -> {
          assertThat(context).doesNotHaveBean(io.r2dbc.pool.ConnectionPool.class);
          ConnectionPool pool = context.getBean(ConnectionPool.class);
          assertThat(config(pool).maxSize()).isEqualTo(6);
          assertThat(pool.name()).isEqualTo("legacy");
        });
  }

  @Test
  void poolingDisabledLeavesTheDriverUnpooledUnlessTheUrlAsksForLagoon() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "spring.r2dbc.pool.enabled=false")
        .run(context -> {
          assertThat(context).hasSingleBean(ConnectionFactory.class)
              .doesNotHaveBean(ConnectionPool.class)
              .doesNotHaveBean(io.r2dbc.pool.ConnectionPool.class);
          assertThat(((Wrapped<?>) context.getBean(ConnectionFactory.class)).unwrap())
              .isInstanceOf(RecordingFactory.class);
        });
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:lagoon:recording://db/shop",
            "spring.r2dbc.pool.enabled=false")
        .run(context -> assertThat(context).hasSingleBean(ConnectionPool.class));
  }

  @Test
  void withoutR2dbcPoolOnTheClassPathTheDriverUrlIsStillLagoons() {
    runner.withClassLoader(new FilteredClassLoader(io.r2dbc.pool.ConnectionPool.class,
            DatabaseClient.class))
        .withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop")
        .run(context -> assertThat(context).hasSingleBean(ConnectionPool.class));
  }

  @Test
  void theApplicationsOwnConnectionFactoryWins() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop")
        .withBean("mine", ConnectionFactory.class,
            () -> io.r2dbc.spi.ConnectionFactories.get("r2dbc:recording://db/other"))
        .run(context -> assertThat(context).hasSingleBean(ConnectionFactory.class)
            .doesNotHaveBean(ConnectionPool.class).hasBean("mine"));
  }

  // ------------------------------------------------------------------ properties

  @Test
  void everySpringR2dbcPoolPropertyKeepsItsMeaning() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "spring.r2dbc.pool.initial-size=2", "spring.r2dbc.pool.max-size=7",
            "spring.r2dbc.pool.min-idle=1", "spring.r2dbc.pool.max-idle-time=11m",
            "spring.r2dbc.pool.max-life-time=1h", "spring.r2dbc.pool.max-acquire-time=4s",
            "spring.r2dbc.pool.acquire-retry=3", "spring.r2dbc.pool.max-create-connection-time=6s",
            "spring.r2dbc.pool.max-validation-time=2s",
            "spring.r2dbc.pool.validation-query=SELECT 2",
            "spring.r2dbc.pool.validation-depth=remote")
        .run(context -> {
          PoolConfig c = config(context.getBean(ConnectionPool.class));
          assertThat(c.initialSize()).isEqualTo(2);
          assertThat(c.maxSize()).isEqualTo(7);
          assertThat(c.minIdle()).isEqualTo(1);
          assertThat(c.maxIdleTime()).isEqualTo(Duration.ofMinutes(11));
          assertThat(c.maxLifeTime()).isEqualTo(Duration.ofHours(1));
          assertThat(c.maxAcquireTime()).isEqualTo(Duration.ofSeconds(4));
          assertThat(c.acquireRetry()).isEqualTo(3);
          assertThat(c.maxCreateConnectionTime()).isEqualTo(Duration.ofSeconds(6));
          assertThat(c.maxValidationTime()).isEqualTo(Duration.ofSeconds(2));
          assertThat(c.validationQuery()).isEqualTo("SELECT 2");
          assertThat(c.validationDepth()).isEqualTo(ValidationDepth.REMOTE);
        });
  }

  @Test
  void unsetPropertiesKeepLagoonsDefaultsNotSpringBootsR2dbcPoolDefaults() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop")
        .run(context -> {
          PoolConfig c = config(context.getBean(ConnectionPool.class));
          assertThat(c.acquireRetry()).as("r2dbc-pool's default is 1").isZero();
          assertThat(c.maxAcquireTime()).as("r2dbc-pool waits forever").hasSeconds(30);
        });
  }

  @Test
  void lagoonPoolPropertiesSetLagoonsOwnOptions() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "lagoon.pool.pool-name=shop", "lagoon.pool.max-pending-acquires=100",
            "lagoon.pool.max-concurrent-creates=2", "lagoon.pool.max-close-time=3s",
            "lagoon.pool.keepalive-interval=1m", "lagoon.pool.validation-skip-window=250ms",
            "lagoon.pool.session-reset=always", "lagoon.pool.background-eviction-interval=10s",
            "lagoon.pool.register-jmx=false", "lagoon.pool.leak-detection-threshold=20s")
        .run(context -> {
          ConnectionPool pool = context.getBean(ConnectionPool.class);
          PoolConfig c = config(pool);
          assertThat(pool.name()).isEqualTo("shop");
          assertThat(c.maxPendingAcquires()).isEqualTo(100);
          assertThat(c.maxConcurrentCreates()).isEqualTo(2);
          assertThat(c.maxCloseTime()).isEqualTo(Duration.ofSeconds(3));
          assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofMinutes(1));
          assertThat(c.validationSkipWindow()).isEqualTo(Duration.ofMillis(250));
          assertThat(c.sessionReset()).isEqualTo(SessionReset.ALWAYS);
          assertThat(c.backgroundEvictionInterval()).isEqualTo(Duration.ofSeconds(10));
          assertThat(c.registerJmx()).isFalse();
          assertThat(c.leakDetectionThreshold()).isEqualTo(Duration.ofSeconds(20));
        });
  }

  @Test
  void aPropertyThatDisagreesWithTheUrlStopsStartupNamingBoth() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:lagoon:recording://db/shop?maxSize=5"
            + "&maxCloseTime=PT3S", "spring.r2dbc.pool.max-size=7",
            "lagoon.pool.max-close-time=3s")
        .run(context -> assertThat(context).hasFailed().getFailure()
            .rootCause().isInstanceOf(IllegalArgumentException.class)
            .hasMessage("Lagoon pool options set twice with different values:"
                + " spring.r2dbc.pool.max-size (7) and the URL's maxSize (5). Set each option"
                + " once: in spring.r2dbc.url or in the property (the same value in both is"
                + " fine)."));
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:lagoon:recording://db/shop?maxSize=5",
            "spring.r2dbc.pool.max-size=5")
        .run(context -> assertThat(config(context.getBean(ConnectionPool.class)).maxSize())
            .isEqualTo(5));
  }

  @Test
  void aBadPropertyValueNamesTheProperty() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "spring.r2dbc.pool.max-size=0")
        .run(context -> assertThat(context).hasFailed().getFailure().rootCause()
            .hasMessage("maxSize (0) must be >= 1 (maxSize is set by spring.r2dbc.pool.max-size)"));
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "lagoon.pool.leak-detection-threshold=-5s")
        .run(context -> assertThat(context).hasFailed().getFailure().rootCause()
            .hasMessage("leakDetectionThreshold (PT-5S) must not be negative (zero disables leak"
                + " detection) (leakDetectionThreshold is set by"
                + " lagoon.pool.leak-detection-threshold)"));
  }

  @Test
  void builderCustomizersRunAfterTheProperties() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "spring.r2dbc.pool.max-size=7")
        .withBean(ConnectionPoolBuilderCustomizer.class, () -> b -> b.maxSize(9))
        .run(context -> assertThat(config(context.getBean(ConnectionPool.class)).maxSize())
            .isEqualTo(9));
  }

  // ------------------------------------------------------------------ meters and health

  @Test
  void metersHaveSpringBootsNamesAndTheHealthIsLagoons() {
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "spring.r2dbc.pool.initial-size=2")
        .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
        .run(context -> {
          MeterRegistry registry = context.getBean(MeterRegistry.class);
          ConnectionPool pool = context.getBean(ConnectionPool.class);
          Await.until("2 idle connections", () -> pool.stats().idle() == 2);
          assertThat(registry.get("r2dbc.pool.idle").tag("name", "connectionFactory").gauge()
              .value()).isEqualTo(2);
          assertThat(registry.get("r2dbc.pool.creation").tag("outcome", "success").timer()
              .count()).as("bound before the initial fill").isEqualTo(2);
          assertThat(registry.find("r2dbc.pool.acquired").gauges()).hasSize(1);
          StepVerifier.create(pool.withConnection(c -> Mono.just("lent"))).expectNext("lent")
              .verifyComplete();
          assertThat(registry.get("r2dbc.pool.acquire").tag("outcome", "success").functionTimer()
              .count()).as("lean acquire timer, through the auto-configured listener").isEqualTo(1);
          assertThat(registry.get("r2dbc.pool.usage").functionTimer().count()).isEqualTo(1);
          ReactiveHealthContributor health = context.getBean("r2dbcHealthContributor",
              ReactiveHealthContributor.class);
          assertThat(health).isInstanceOf(LagoonHealthIndicator.class);
          context.close();
          assertThat(registry.getMeters()).as("removed with the pool").isEmpty();
        });
    runner.withPropertyValues("spring.r2dbc.url=r2dbc:recording://db/shop",
            "lagoon.metrics.naming=open-telemetry")
        .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
        .run(context -> assertThat(context.getBean(MeterRegistry.class)
            .get("db.client.connection.max").tag("pool.name", "connectionFactory").gauge()
            .value()).isEqualTo(10));
  }

  @Test
  void anApplicationsOwnLagoonPoolGetsMetersHealthAndShutdownToo() {
    runner.withBean("mine", ConnectionFactory.class,
            () -> io.r2dbc.spi.ConnectionFactories.get("r2dbc:lagoon:recording://db/x?poolName=mine"))
        .withBean(MeterRegistry.class, SimpleMeterRegistry::new)
        .run(context -> {
          ConnectionPool pool = (ConnectionPool) context.getBean("mine");
          assertThat(context.getBean(MeterRegistry.class).get("r2dbc.pool.max.allocated")
              .tag("name", "mine").gauge().value()).isEqualTo(10);
          assertThat(context.getBean("r2dbcHealthContributor"))
              .isInstanceOf(LagoonHealthIndicator.class);
          context.close();
          assertThat(pool.isDisposed()).isTrue();
        });
  }

  // ------------------------------------------------------------------ PostgreSQL

  private ApplicationContextRunner postgres() {
    return boot.withPropertyValues("spring.r2dbc.url=" + PostgresSupport.r2dbcUrl(),
        "spring.r2dbc.properties.applicationName=" + app, "spring.r2dbc.pool.initial-size=2",
        "spring.r2dbc.pool.max-size=3");
  }

  @Test
  void onPostgresAQueryInFlightAtCloseCompletesAndThenNoBackendIsLeft() throws Exception {
    postgres().run(context -> {
      try (Backends server = Backends.connect()) {
        ConnectionPool pool = context.getBean(ConnectionPool.class);
        DatabaseClient db = context.getBean(DatabaseClient.class);
        assertThat(db.getConnectionFactory()).isSameAs(pool);
        assertThat(db.sql("SELECT 1").map(r -> r.get(0, Integer.class)).one()
            .block(Duration.ofSeconds(10))).isEqualTo(1);
        server.awaitCount(app, 2, Await.BOUND); // the initial fill

        CompletableFuture<Integer> inFlight = db.sql("SELECT 7 FROM pg_sleep(1)")
            .map(r -> r.get(0, Integer.class)).one().toFuture();
        Await.until("the query holds a connection", () -> pool.stats().acquired() == 1);
        context.close(); // returns once the lifecycle's graceful close has finished
        assertThat(inFlight.get(10, TimeUnit.SECONDS)).isEqualTo(7);
        assertThat(pool.isDisposed()).isTrue();
        server.awaitCount(app, 0, Await.BOUND); // no backend named app is left after close
      }
    });
  }

  @Test
  void onPostgresHealthIsUpWithStatsAndDownWhenTheDatabaseRefusesConnections() {
    postgres().run(context -> {
      ReactiveHealthContributor c = context.getBean("r2dbcHealthContributor",
          ReactiveHealthContributor.class);
      Health h = ((LagoonHealthIndicator) c).health().block(Duration.ofSeconds(10));
      assertThat(h.getStatus()).isEqualTo(Status.UP);
      assertThat(h.getDetails()).containsEntry("maxSize", 3).containsKey("idle");
    });
    boot.withPropertyValues("spring.r2dbc.url=r2dbc:postgresql://postgres@127.0.0.1:1/test",
            "spring.r2dbc.properties.applicationName=" + app)
        .run(context -> {
          LagoonHealthIndicator indicator = context.getBean("r2dbcHealthContributor",
              LagoonHealthIndicator.class);
          Health h = indicator.health().block(Duration.ofSeconds(10));
          assertThat(h.getStatus()).isEqualTo(Status.DOWN);
          assertThat(h.getDetails().get("error").toString()).contains("Cannot connect");
          assertThat(h.getDetails().get("reason").toString()).contains("refuses connections");
          ConnectionPool pool = context.getBean(ConnectionPool.class);
          assertThat(Mono.from(pool.create()).map(x -> "got one")
              .onErrorResume(PoolUnavailableException.class, e -> Mono.just("unavailable"))
              .block(Duration.ofSeconds(10))).isEqualTo("unavailable");
        });
  }
}
