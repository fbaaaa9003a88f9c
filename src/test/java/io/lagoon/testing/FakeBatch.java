package io.lagoon.testing;

import io.r2dbc.spi.Batch;
import io.r2dbc.spi.Result;
import java.util.List;
import java.util.Objects;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import reactor.core.publisher.Flux;

/** Batch of a {@link FakeConnection}: executes its SQL strings in order, one Result each. */
final class FakeBatch implements Batch {

    private final FakeConnection connection;
    private final Queue<String> sql = new ConcurrentLinkedQueue<>();

    FakeBatch(FakeConnection connection) {
        this.connection = connection;
    }

    @Override
    public Batch add(String sql) {
        this.sql.add(Objects.requireNonNull(sql, "sql"));
        return this;
    }

    /** Stops at the first failing entry. */
    @Override
    public Flux<Result> execute() {
        return Flux.defer(() -> {
            List<String> snapshot = List.copyOf(sql);
            return Flux.fromIterable(snapshot).<Result>concatMap(connection::execute);
        });
    }
}
