import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.concurrent.Executors;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A tiny shop backend: products in the environment's MariaDB (credentials injected by minicloud). */
public class Shop {
    static Connection connect() throws SQLException {
        String url = "jdbc:mariadb://" + System.getenv("MYSQL_HOST") + ":" + System.getenv("MYSQL_PORT")
                + "/" + System.getenv("MYSQL_DATABASE");
        return DriverManager.getConnection(url, System.getenv("MYSQL_USER"), System.getenv("MYSQL_PASSWORD"));
    }

    static void send(HttpExchange ex, int status, String json) throws IOException {
        byte[] body = json.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("content-type", "application/json");
        ex.sendResponseHeaders(status, body.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
        }
    }

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static void products(HttpExchange ex) throws IOException {
        try (Connection db = connect()) {
            if (ex.getRequestMethod().equals("POST")) {
                String body = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
                Matcher name = Pattern.compile("\"name\"\\s*:\\s*\"([^\"]*)\"").matcher(body);
                Matcher price = Pattern.compile("\"price_cents\"\\s*:\\s*(\\d+)").matcher(body);
                if (!name.find() || !price.find()) {
                    send(ex, 400, "{\"error\":\"name and price_cents are required\"}");
                    return;
                }
                try (PreparedStatement st = db.prepareStatement(
                        "INSERT INTO products (name, price_cents) VALUES (?, ?)", Statement.RETURN_GENERATED_KEYS)) {
                    st.setString(1, name.group(1));
                    st.setInt(2, Integer.parseInt(price.group(1)));
                    st.executeUpdate();
                    ResultSet keys = st.getGeneratedKeys();
                    keys.next();
                    System.out.println("added product " + keys.getLong(1) + " " + name.group(1));
                    send(ex, 201, "{\"id\":" + keys.getLong(1) + ",\"name\":" + quote(name.group(1)) + "}");
                }
                return;
            }
            StringBuilder out = new StringBuilder("[");
            try (ResultSet rs = db.createStatement().executeQuery(
                    "SELECT id, name, price_cents FROM products ORDER BY id")) {
                while (rs.next()) {
                    if (out.length() > 1) out.append(',');
                    out.append("{\"id\":").append(rs.getLong(1)).append(",\"name\":").append(quote(rs.getString(2)))
                       .append(",\"price_cents\":").append(rs.getInt(3)).append('}');
                }
            }
            send(ex, 200, out.append(']').toString());
        } catch (SQLException e) {
            System.err.println("database error: " + e.getMessage());
            send(ex, 500, "{\"error\":" + quote(String.valueOf(e.getMessage())) + "}");
        }
    }

    public static void main(String[] args) throws Exception {
        try (Connection db = connect()) {
            db.createStatement().execute("CREATE TABLE IF NOT EXISTS products ("
                    + "id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, price_cents INT NOT NULL)");
        }
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 0);
        server.setExecutor(Executors.newFixedThreadPool(8));
        server.createContext("/healthz", ex -> {
            try (Connection db = connect()) {
                db.createStatement().execute("SELECT 1");
                send(ex, 200, "{\"ok\":true}");
            } catch (SQLException e) {
                send(ex, 503, "{\"ok\":false}");
            }
        });
        server.createContext("/products", Shop::products);
        server.createContext("/", ex -> send(ex, 200, "{\"app\":" + quote(String.valueOf(System.getenv("MINICLOUD_APP")))
                + ",\"release\":" + quote(String.valueOf(System.getenv("MINICLOUD_RELEASE"))) + "}"));
        server.start();
        System.out.println("jshop " + System.getenv("MINICLOUD_RELEASE") + " listening on " + port);
    }
}
