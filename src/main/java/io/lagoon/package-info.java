/**
 * Lagoon: a reactive, fair, bounded connection pool for R2DBC.
 *
 * <p>Start at {@link io.lagoon.ConnectionPool#builder(io.r2dbc.spi.ConnectionFactory)}.
 */
@NullMarked
package io.lagoon;

import org.jspecify.annotations.NullMarked;
