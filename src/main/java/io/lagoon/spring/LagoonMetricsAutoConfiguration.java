package io.lagoon.spring;

import io.lagoon.ConnectionPool;
import io.lagoon.micrometer.LagoonMetrics;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.r2dbc.spi.ConnectionFactory;
import java.util.Collections;
import java.util.Set;
import java.util.WeakHashMap;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.beans.factory.SmartInitializingSingleton;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnBooleanProperty;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.context.annotation.Bean;

/**
 * Binds the meters of every Lagoon pool in the context to the application's {@link MeterRegistry}
 * ({@code lagoon.metrics.naming} picks the names): the auto-configured pool from its first connect
 * on, the application's own pools once every singleton exists. Off with {@code
 * lagoon.metrics.enabled=false}.
 */
@AutoConfiguration(before = LagoonAutoConfiguration.class, afterName =
    "org.springframework.boot.micrometer.metrics.autoconfigure.CompositeMeterRegistryAutoConfiguration")
@ConditionalOnClass({MeterRegistry.class, ConnectionFactory.class})
@ConditionalOnBean(MeterRegistry.class)
@ConditionalOnBooleanProperty(name = "lagoon.metrics.enabled", matchIfMissing = true)
public class LagoonMetricsAutoConfiguration {

  @Bean
  LagoonMeterBinding lagoonMeterBinding(MeterRegistry registry, LagoonProperties properties,
      ObjectProvider<ConnectionFactory> connectionFactories) {
    LagoonMetrics.Naming naming =
        properties.getMetrics().getNaming() == LagoonProperties.Metrics.Naming.OPEN_TELEMETRY
            ? LagoonMetrics.Naming.OPEN_TELEMETRY : LagoonMetrics.Naming.SPRING_BOOT;
    return new LagoonMeterBinding(registry, naming, connectionFactories);
  }

  /**
   * Adds the meters' listener to the auto-configured pool's builder, and binds the other pools it
   * finds among the connection factories when every singleton exists.
   */
  static final class LagoonMeterBinding
      implements ConnectionPoolBuilderCustomizer, SmartInitializingSingleton {

    private final MeterRegistry registry;
    private final LagoonMetrics.Naming naming;
    private final ObjectProvider<ConnectionFactory> connectionFactories;
    private final Set<ConnectionPool> bound =
        Collections.synchronizedSet(Collections.newSetFromMap(new WeakHashMap<>()));

    LagoonMeterBinding(MeterRegistry registry, LagoonMetrics.Naming naming,
        ObjectProvider<ConnectionFactory> connectionFactories) {
      this.registry = registry;
      this.naming = naming;
      this.connectionFactories = connectionFactories;
    }

    @Override
    public void customize(io.lagoon.ConnectionPoolBuilder builder) {
      // Forwards every PoolListener event (a test checks that none is missed) and notes the pool.
      builder.listener(new io.lagoon.PoolListener() {
        private final io.lagoon.PoolListener meters =
            LagoonMetrics.listener(registry, naming, Tags.empty());

        @Override
        public void onAttach(ConnectionPool pool) {
          bound.add(pool);
          meters.onAttach(pool);
        }

        @Override
        public void onAcquire(AcquireOutcome outcome, long waitNanos) {
          meters.onAcquire(outcome, waitNanos);
        }

        @Override
        public void onLend() {
          meters.onLend();
        }

        @Override
        public void onReturn(long usageNanos) {
          meters.onReturn(usageNanos);
        }

        @Override
        public void onLeak(long lentNanos) {
          meters.onLeak(lentNanos);
        }

        @Override
        public void onCreate(boolean success, long nanos) {
          meters.onCreate(success, nanos);
        }

        @Override
        public void onConnectFailure(Throwable error) {
          meters.onConnectFailure(error);
        }

        @Override
        public void onEvict(EvictionReason reason) {
          meters.onEvict(reason);
        }

        @Override
        public void onDetach() {
          meters.onDetach();
        }
      });
    }

    @Override
    public void afterSingletonsInstantiated() {
      connectionFactories.orderedStream().forEach(cf -> {
        ConnectionPool pool = LagoonShutdown.find(cf);
        if (pool != null && bound.add(pool)) {
          LagoonMetrics.monitor(pool, registry, naming, Tags.empty());
        }
      });
    }
  }
}
