package io.lagoon.spring;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.ConnectionPoolBuilder;
import io.lagoon.PoolListener;
import io.lagoon.micrometer.LagoonMetrics;
import io.lagoon.testing.FakeConnectionFactory;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.r2dbc.spi.Connection;
import java.lang.reflect.Method;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.springframework.beans.factory.support.DefaultListableBeanFactory;
import reactor.core.publisher.Mono;
import reactor.test.scheduler.VirtualTimeScheduler;

/** The auto-configured pool's meters listener forwards every event the pool emits. */
class LagoonMeterBindingTest {

  private final VirtualTimeScheduler time = VirtualTimeScheduler.create();
  private final SimpleMeterRegistry registry = new SimpleMeterRegistry();
  private ConnectionPool pool;

  @AfterEach
  void tearDown() {
    if (pool != null) {
      pool.dispose();
    }
    time.dispose();
  }

  /** Builds the pool with the binding's customizer applied, as the auto-configuration does. */
  private void bind(ConnectionPoolBuilder builder) {
    LagoonMetricsAutoConfiguration.LagoonMeterBinding binding =
        new LagoonMetricsAutoConfiguration.LagoonMeterBinding(registry,
            LagoonMetrics.Naming.SPRING_BOOT,
            new DefaultListableBeanFactory().getBeanProvider(io.r2dbc.spi.ConnectionFactory.class));
    binding.customize(builder);
    pool = builder.build();
  }

  @Test
  void theForwardingListenerOverridesEveryEvent() throws NoSuchMethodException {
    ConnectionPoolBuilder builder = ConnectionPool.builder(new FakeConnectionFactory())
        .initialSize(0).poolName("bound").scheduler(time);
    bind(builder);
    List<Class<?>> anonymous = findAnonymousListener();
    assertThat(anonymous).as("the binding's forwarding listener").hasSize(1);
    for (Method m : PoolListener.class.getDeclaredMethods()) {
      if (m.isDefault()) {
        assertThat(anonymous.get(0).getDeclaredMethod(m.getName(), m.getParameterTypes()))
            .as("forwards %s", m.getName()).isNotNull();
      }
    }
  }

  @Test
  void aLeakOfTheAutoConfiguredPoolIsCounted() {
    bind(ConnectionPool.builder(new FakeConnectionFactory()).initialSize(0)
        .poolName("bound").scheduler(time).leakDetectionThreshold(Duration.ofSeconds(10)));
    Connection held = pool.create().block(Duration.ofSeconds(5));
    time.advanceTimeBy(Duration.ofMinutes(1));
    assertThat(pool.stats().leaks()).isEqualTo(1);
    assertThat(registry.get("r2dbc.pool.leaks").tag("name", "bound").counter().count())
        .isEqualTo(1);
    Mono.from(held.close()).block(Duration.ofSeconds(5));
  }

  private static List<Class<?>> findAnonymousListener() {
    List<Class<?>> found = new java.util.ArrayList<>();
    for (int i = 1; i < 10; i++) {
      try {
        Class<?> c = Class.forName(LagoonMetricsAutoConfiguration.LagoonMeterBinding.class
            .getName() + "$" + i);
        if (PoolListener.class.isAssignableFrom(c)) {
          found.add(c);
        }
      } catch (ClassNotFoundException e) {
        break;
      }
    }
    return found;
  }
}
