/**
 * Spring Boot auto-configuration for Lagoon: the application's {@code ConnectionFactory} becomes a
 * Lagoon {@link io.lagoon.ConnectionPool} built from {@code spring.r2dbc.*} and {@code lagoon.*}
 * properties, closed gracefully with the application context, with an {@code r2dbc} health
 * contributor and Micrometer meters. Spring Boot is an optional dependency: nothing outside this
 * package refers to it.
 */
@NullMarked
package io.lagoon.spring;

import org.jspecify.annotations.NullMarked;
