package io.lagoon.testing;

import io.r2dbc.spi.R2dbcException;

/**
 * A concrete {@link R2dbcException} carrying an SQLSTATE, for making a {@link FakeConnection} fail a
 * statement or a commit with a database-style error (for instance {@code "40001"} serialization
 * failure or {@code "57P01"} admin shutdown).
 */
public final class FakeSqlException extends R2dbcException {

    private static final long serialVersionUID = 1L;

    public FakeSqlException(String message, String sqlState) {
        super(message, sqlState);
    }

    public FakeSqlException(String message, String sqlState, int errorCode) {
        super(message, sqlState, errorCode);
    }
}
