// The same loop as jmx/examples/latency.rs, with the JDK's own JMX client, for comparison.
// Run: java jmx/benches/JmxLatency.java HOST:PORT [CALLS]
import java.util.Arrays;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class JmxLatency {
    public static void main(String[] args) throws Exception {
        int calls = args.length > 1 ? Integer.parseInt(args[1]) : 10000;
        JMXServiceURL url = new JMXServiceURL("service:jmx:rmi:///jndi/rmi://" + args[0] + "/jmxrmi");
        try (JMXConnector connector = JMXConnectorFactory.connect(url)) {
            MBeanServerConnection connection = connector.getMBeanServerConnection();
            ObjectName runtime = new ObjectName("java.lang:type=Runtime");
            for (int i = 0; i < 500; i++) connection.getAttribute(runtime, "Uptime");
            double[] micros = new double[calls];
            long started = System.nanoTime();
            for (int i = 0; i < calls; i++) {
                long call = System.nanoTime();
                connection.getAttribute(runtime, "Uptime");
                micros[i] = (System.nanoTime() - call) / 1000.0;
            }
            double total = (System.nanoTime() - started) / 1e9;
            Arrays.sort(micros);
            System.out.printf("{\"client\":\"JDK JMXConnector (Java %s)\",\"calls\":%d,\"p50_us\":%.0f,\"p99_us\":%.0f,\"calls_per_s\":%.0f}%n",
                    System.getProperty("java.version"), calls, micros[calls / 2], micros[(int) (calls * 0.99)], calls / total);
        }
    }
}
