package io.lagoon.testing;

import io.r2dbc.spi.Result;
import io.r2dbc.spi.Statement;
import java.util.BitSet;
import java.util.NoSuchElementException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import reactor.core.publisher.Flux;

/**
 * Statement of a {@link FakeConnection}. It checks its bindings the way real drivers do, and when
 * they do: the parameters are the {@code $1 ... $n} markers in the SQL (read from the text, quotes
 * not considered); {@code bind} to an index or name that is not one of them throws ({@code
 * IndexOutOfBoundsException}, {@code NoSuchElementException}), a {@code null} argument is an {@code
 * IllegalArgumentException}, and {@code add()} or {@code execute()} with a parameter left unbound
 * (a trailing {@code add()} included) throws an {@code IllegalStateException} naming it, when
 * called. The bound values themselves are ignored.
 */
final class FakeStatement implements Statement {

    private static final Pattern PARAMETER = Pattern.compile("\\$(\\d+)");

    private final FakeConnection connection;
    private final String sql;
    private final int parameters;
    /** The parameters bound in the current binding set (index 0 is {@code $1}). */
    private final BitSet bound = new BitSet();

    FakeStatement(FakeConnection connection, String sql) {
        this.connection = connection;
        this.sql = sql;
        int n = 0;
        Matcher m = PARAMETER.matcher(sql);
        while (m.find()) {
            n = Math.max(n, Integer.parseInt(m.group(1)));
        }
        this.parameters = n;
    }

    @Override
    public Statement add() {
        requireComplete("add()");
        bound.clear();
        return this;
    }

    @Override
    public Statement bind(int index, Object value) {
        requireArg(value, "value");
        bound.set(checkIndex(index));
        return this;
    }

    @Override
    public Statement bind(String name, Object value) {
        requireArg(name, "name");
        requireArg(value, "value");
        bound.set(indexOf(name));
        return this;
    }

    @Override
    public Statement bindNull(int index, Class<?> type) {
        requireArg(type, "type");
        bound.set(checkIndex(index));
        return this;
    }

    @Override
    public Statement bindNull(String name, Class<?> type) {
        requireArg(name, "name");
        requireArg(type, "type");
        bound.set(indexOf(name));
        return this;
    }

    /**
     * Throws if a parameter is unbound; otherwise a cold Flux of exactly one {@link Result} (or an
     * error), evaluated at subscription.
     */
    @Override
    public Flux<Result> execute() {
        requireComplete("execute()");
        return connection.execute(sql).flux().cast(Result.class);
    }

    private void requireComplete(String method) {
        int missing = bound.nextClearBit(0);
        if (missing < parameters) {
            throw new IllegalStateException(method + ": parameter $" + (missing + 1)
                    + " is not bound (fake)");
        }
    }

    private int checkIndex(int index) {
        if (index < 0 || index >= parameters) {
            throw new IndexOutOfBoundsException("bind index " + index + " is not a parameter of "
                    + this + " (" + parameters + " parameters)");
        }
        return index;
    }

    private int indexOf(String name) {
        Matcher m = PARAMETER.matcher(name);
        if (m.matches()) {
            int n = Integer.parseInt(m.group(1));
            if (n >= 1 && n <= parameters) {
                return n - 1;
            }
        }
        throw new NoSuchElementException("no parameter named '" + name + "' in " + this);
    }

    private static void requireArg(Object value, String name) {
        if (value == null) {
            throw new IllegalArgumentException(name + " must not be null");
        }
    }

    @Override
    public String toString() {
        return "FakeStatement{" + sql + "}";
    }
}
