package io.lagoon.testing;

import io.r2dbc.spi.ColumnMetadata;
import io.r2dbc.spi.R2dbcType;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Row;
import io.r2dbc.spi.RowMetadata;
import io.r2dbc.spi.Type;
import java.util.List;
import java.util.Locale;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.Predicate;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Result of one fake statement: {@code getRowsUpdated()} emits 0; rows are produced only for
 * {@code SELECT 1} (one row, one INTEGER column named {@code ?column?} whose value is 1) and
 * {@code SELECT connection_id()} (one row, one column named {@code connection_id} holding the
 * connection's {@link FakeConnection#id()}, as {@code pg_backend_pid()} names a PostgreSQL
 * session: a borrower learns which physical connection it holds without {@code unwrap()}).
 */
final class FakeResult implements Result {

    private static final String COLUMN = "?column?";
    private static final String ID_COLUMN = "connection_id";

    private final String sql;
    /** The single row's value, or null when the statement returns no row. */
    private final Number value;
    private final Predicate<Segment> filter;

    FakeResult(String sql, long connectionId) {
        this(sql, rowValue(sql, connectionId), segment -> true);
    }

    private static Number rowValue(String sql, long connectionId) {
        if (isSelectOne(sql)) {
            return Integer.valueOf(1);
        }
        return isConnectionId(sql) ? Long.valueOf(connectionId) : null;
    }

    private FakeResult(String sql, Number value, Predicate<Segment> filter) {
        this.sql = sql;
        this.value = value;
        this.filter = filter;
    }

    static boolean isSelectOne(String sql) {
        return normalized(sql).matches("SELECT\\s+1");
    }

    static boolean isConnectionId(String sql) {
        return normalized(sql).matches("SELECT\\s+CONNECTION_ID\\(\\s*\\)");
    }

    private static String normalized(String sql) {
        String s = sql.strip();
        if (s.endsWith(";")) {
            s = s.substring(0, s.length() - 1).strip();
        }
        return s.toUpperCase(Locale.ROOT);
    }

    @Override
    public Mono<Long> getRowsUpdated() {
        return Mono.just(0L);
    }

    @Override
    public <T> Flux<T> map(BiFunction<Row, RowMetadata, ? extends T> mappingFunction) {
        Objects.requireNonNull(mappingFunction, "mappingFunction");
        return Flux.fromIterable(segments())
                .ofType(RowSegment.class)
                .map(segment -> mappingFunction.apply(segment.row(), segment.row().getMetadata()));
    }

    @Override
    public Result filter(Predicate<Segment> predicate) {
        Objects.requireNonNull(predicate, "predicate");
        return new FakeResult(sql, value, filter.and(predicate));
    }

    @Override
    public <T> Flux<T> flatMap(Function<Segment, ? extends Publisher<? extends T>> mappingFunction) {
        Objects.requireNonNull(mappingFunction, "mappingFunction");
        return Flux.fromIterable(segments()).concatMap(mappingFunction::apply);
    }

    private List<Segment> segments() {
        Number v = value;
        Segment segment = v != null ? (RowSegment) () -> new OneRow(v) : (UpdateCount) () -> 0L;
        return filter.test(segment) ? List.of(segment) : List.of();
    }

    @Override
    public String toString() {
        return "FakeResult{" + sql + "}";
    }

    // ---- the one row of SELECT 1 or SELECT connection_id() ----

    private static ColumnMetadata column(String name, Type type, Class<?> javaType) {
        return new ColumnMetadata() {
            @Override
            public Type getType() {
                return type;
            }

            @Override
            public Class<?> getJavaType() {
                return javaType;
            }

            @Override
            public String getName() {
                return name;
            }
        };
    }

    private static final ColumnMetadata ONE_COLUMN = column(COLUMN, R2dbcType.INTEGER, Integer.class);
    private static final ColumnMetadata ID_COLUMN_METADATA = column(ID_COLUMN, R2dbcType.BIGINT, Long.class);

    /** One row of one column. */
    private static final class OneRow implements Row, RowMetadata {
        private final Number value;
        private final ColumnMetadata column;

        OneRow(Number value) {
            this.value = value;
            this.column = value instanceof Long ? ID_COLUMN_METADATA : ONE_COLUMN;
        }

        @Override
        public RowMetadata getMetadata() {
            return this;
        }

        @Override
        public <T> T get(int index, Class<T> type) {
            checkIndex(index);
            return convert(type);
        }

        @Override
        public <T> T get(String name, Class<T> type) {
            checkName(name);
            return convert(type);
        }

        @Override
        public ColumnMetadata getColumnMetadata(int index) {
            checkIndex(index);
            return column;
        }

        @Override
        public ColumnMetadata getColumnMetadata(String name) {
            checkName(name);
            return column;
        }

        @Override
        public List<? extends ColumnMetadata> getColumnMetadatas() {
            return List.of(column);
        }

        @Override
        public boolean contains(String name) {
            return column.getName().equalsIgnoreCase(name);
        }

        private void checkIndex(int index) {
            if (index != 0) {
                throw new IndexOutOfBoundsException("column index " + index + " (fake " + what() + " has one column)");
            }
        }

        private void checkName(String name) {
            if (!column.getName().equalsIgnoreCase(name)) {
                throw new NoSuchElementException("no column " + name + " (fake " + what() + " has only "
                        + column.getName() + ")");
            }
        }

        private String what() {
            return column == ONE_COLUMN ? "SELECT 1" : "SELECT connection_id()";
        }

        private <T> T convert(Class<T> type) {
            Objects.requireNonNull(type, "type");
            Object v;
            if (type == Object.class || type == Number.class) {
                v = value;
            } else if (type == Integer.class) {
                v = Math.toIntExact(value.longValue());
            } else if (type == Long.class) {
                v = value.longValue();
            } else if (type == String.class) {
                v = String.valueOf(value);
            } else {
                throw new IllegalArgumentException("cannot convert " + column.getType().getName() + " to "
                        + type.getName() + " (fake)");
            }
            return type.cast(v);
        }
    }
}
