package dev.skiff.handler;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.math.BigInteger;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class JsonTest {
  @Test
  void readsEveryType() {
    Object v = Json.parse(" {\"a\":[1,-2,3.5,1e3,true,false,null],\"s\":\"x\\u00e9\\n\\\"\"} ");
    Map<String, Object> expected = new LinkedHashMap<>();
    expected.put("a", java.util.Arrays.asList(1L, -2L, 3.5, 1000.0, true, false, null));
    expected.put("s", "x\u00e9\n\"");
    assertEquals(expected, v);
  }

  @Test
  void integersAreExact() {
    assertEquals(9007199254740993L, Json.parse("9007199254740993"));
    assertEquals(Long.MIN_VALUE, Json.parse("-9223372036854775808"));
    assertEquals(new BigInteger("18446744073709551616"), Json.parse("18446744073709551616"));
    assertEquals("9223372036854775807", Json.write(Long.MAX_VALUE));
  }

  @Test
  void unicodeAndNulRoundTrip() {
    String s = "\u0000 \u00ff \u4e2d \ud83d\ude00 \u001f";
    assertEquals(s, Json.parse(Json.write(s)));
    assertEquals("\ud83d\ude00", Json.parse("\"\\ud83d\\ude00\""));
    assertEquals("\"\\u0000\\u001f\"", Json.write("\u0000\u001f"));
  }

  @Test
  void refusesWhatIsNotJson() {
    for (String bad : List.of("", "{", "[1,]", "{\"a\":1,}", "01", "-", "1.", "1e", "tru",
        "\"a", "{\"a\":1,\"a\":2}", "1 2", "\ufeff{}", "\"\t\"", "'a'", "{a:1}", "[1 2]",
        "\"\\x\"", "\"\\u12\"", "NaN")) {
      assertThrows(Json.JsonException.class, () -> Json.parse(bad), bad);
    }
    assertThrows(Json.JsonException.class, () -> Json.parse("[".repeat(600) + "]".repeat(600)));
  }

  @Test
  void writesCompactlyAndRefusesNonJson() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("type", "complete");
    m.put("n", 3);
    m.put("l", List.of(1.5, "a"));
    m.put("e", Thread.State.NEW);
    m.put("arr", new Object[] {null, 'c'});
    assertEquals("{\"type\":\"complete\",\"n\":3,\"l\":[1.5,\"a\"],\"e\":\"NEW\","
        + "\"arr\":[null,\"c\"]}", Json.write(m));
    assertThrows(Json.JsonException.class, () -> Json.write(Double.NaN));
    assertThrows(Json.JsonException.class, () -> Json.write(new Object()));
    assertThrows(Json.JsonException.class, () -> Json.write(Map.of(1, 2)));
  }
}
