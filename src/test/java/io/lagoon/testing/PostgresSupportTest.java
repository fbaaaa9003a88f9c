package io.lagoon.testing;

import static org.assertj.core.api.Assertions.assertThat;

import io.r2dbc.spi.Connection;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.test.StepVerifier;

/** Needs a PostgreSQL server: see {@link PostgresSupport} for how one is found. */
class PostgresSupportTest {

    @Test
    void selectOne() {
        System.out.println("[PostgresSupportTest] using " + PostgresSupport.describe());

        Mono<Integer> one = Mono.usingWhen(
                PostgresSupport.connectionFactory().create(),
                connection -> Flux.from(connection.createStatement("SELECT 1").execute())
                        .concatMap(result -> result.map((row, metadata) -> row.get(0, Integer.class)))
                        .single(),
                Connection::close);

        StepVerifier.create(one).expectNext(1).expectComplete().verify(Duration.ofSeconds(30));
    }

    @Test
    void outcomeIsCachedAndDescribedWithoutPassword() {
        assertThat(PostgresSupport.connectionFactory()).isSameAs(PostgresSupport.connectionFactory());
        assertThat(PostgresSupport.describe()).startsWith("PostgreSQL ");
        assertThat(PostgresSupport.r2dbcUrl()).startsWith("r2dbc:");
    }

    @Test
    void maskHidesPassword() {
        assertThat(PostgresSupport.mask("r2dbc:postgresql://u:secret@h:5432/db")).isEqualTo("r2dbc:postgresql://u:***@h:5432/db");
        assertThat(PostgresSupport.mask("r2dbc:postgresql://u@h:5432/db")).isEqualTo("r2dbc:postgresql://u@h:5432/db");
        assertThat(PostgresSupport.mask("r2dbc:postgresql://h:5432/db")).isEqualTo("r2dbc:postgresql://h:5432/db");
    }
}
