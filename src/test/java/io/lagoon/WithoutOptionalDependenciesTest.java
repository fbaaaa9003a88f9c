package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;

/**
 * Lagoon without Spring Boot, Spring or Micrometer on the class path: the core loads, pools and
 * emits events. Run only by Surefire's {@code without-optional-dependencies} execution, whose
 * class path leaves them out (see pom.xml); the default run skips it.
 */
class WithoutOptionalDependenciesTest {

  @Test
  void theOptionalLibrariesAreReallyAbsent() {
    for (String name : new String[] {"org.springframework.boot.SpringApplication",
        "org.springframework.context.ApplicationContext",
        "io.micrometer.core.instrument.MeterRegistry"}) {
      assertThatThrownBy(() -> Class.forName(name)).as(name)
          .isInstanceOf(ClassNotFoundException.class);
    }
  }

  @Test
  void aPoolFromAUrlLendsConnectionsAndEmitsEvents() {
    ConnectionFactory factory = ConnectionFactories.get("r2dbc:lagoon:recording://db/shop?maxSize=2");
    assertThat(factory).isInstanceOf(ConnectionPool.class);
    ConnectionPool pool = (ConnectionPool) factory;
    AtomicInteger lends = new AtomicInteger();
    pool.addListener(new PoolListener() {
      @Override
      public void onLend() {
        lends.incrementAndGet();
      }
    });
    StepVerifier.create(pool.withConnection(c -> Mono.just("ok"))).expectNext("ok")
        .verifyComplete();
    Connection held = Mono.from(pool.create()).block();
    assertThat(pool.stats().acquired()).isEqualTo(1);
    Mono.from(held.close()).block();
    assertThat(lends).hasValue(2);
    pool.dispose();
    assertThat(pool.isDisposed()).isTrue();
  }
}
