package io.lagoon.testing;

import io.r2dbc.spi.Result;
import io.r2dbc.spi.Statement;
import java.util.Objects;
import reactor.core.publisher.Flux;

/** Statement of a {@link FakeConnection}; bindings are accepted and ignored. */
final class FakeStatement implements Statement {

    private final FakeConnection connection;
    private final String sql;

    FakeStatement(FakeConnection connection, String sql) {
        this.connection = connection;
        this.sql = sql;
    }

    @Override
    public Statement add() {
        return this;
    }

    @Override
    public Statement bind(int index, Object value) {
        checkIndex(index);
        Objects.requireNonNull(value, "value");
        return this;
    }

    @Override
    public Statement bind(String name, Object value) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(value, "value");
        return this;
    }

    @Override
    public Statement bindNull(int index, Class<?> type) {
        checkIndex(index);
        Objects.requireNonNull(type, "type");
        return this;
    }

    @Override
    public Statement bindNull(String name, Class<?> type) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(type, "type");
        return this;
    }

    /** A cold Flux of exactly one {@link Result} (or an error), evaluated at subscription. */
    @Override
    public Flux<Result> execute() {
        return connection.execute(sql).flux().cast(Result.class);
    }

    private static void checkIndex(int index) {
        if (index < 0) {
            throw new IndexOutOfBoundsException("negative bind index: " + index);
        }
    }

    @Override
    public String toString() {
        return "FakeStatement{" + sql + "}";
    }
}
