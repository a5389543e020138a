// Lenient typed reads from the parsed wire JSON (see WireJson): a missing key or a value of another
// type gives the fallback instead of an exception, so a host that adds fields never breaks a client.
// Thread-safety: stateless.

using System;
using System.Collections.Generic;
using System.Globalization;

namespace SdxlHost.Client
{
    /// <summary>Typed, forgiving accessors over the objects <see cref="WireJson.Parse"/> returns.</summary>
    public static class WireValues
    {
        /// <summary>The value under <paramref name="key"/>, or null when absent or when <paramref name="map"/> is null.</summary>
        public static object Get(IDictionary<string, object> map, string key)
        {
            object value;
            if (map == null || !map.TryGetValue(key, out value)) return null;
            return value;
        }

        /// <summary>The JSON object under <paramref name="key"/>, or null.</summary>
        public static IDictionary<string, object> GetObject(IDictionary<string, object> map, string key)
        {
            return Get(map, key) as IDictionary<string, object>;
        }

        /// <summary>The JSON array under <paramref name="key"/>, or an empty list.</summary>
        public static IList<object> GetArray(IDictionary<string, object> map, string key)
        {
            return (Get(map, key) as IList<object>) ?? new List<object>();
        }

        /// <summary>The string under <paramref name="key"/> (numbers and booleans are formatted), or null.</summary>
        public static string GetString(IDictionary<string, object> map, string key)
        {
            object value = Get(map, key);
            if (value == null || value is IDictionary<string, object> || value is IList<object>) return null;
            if (value is bool) return (bool)value ? "true" : "false";
            return Convert.ToString(value, CultureInfo.InvariantCulture);
        }

        /// <summary>The number under <paramref name="key"/> as a double, or null when absent or not a number.</summary>
        public static double? GetDouble(IDictionary<string, object> map, string key)
        {
            object value = Get(map, key);
            if (value is long) return (long)value;
            if (value is double) return (double)value;
            return null;
        }

        /// <summary>The integral number under <paramref name="key"/>, or null when absent or not an integer.</summary>
        public static long? GetLong(IDictionary<string, object> map, string key)
        {
            object value = Get(map, key);
            if (value is long) return (long)value;
            if (value is double)
            {
                double number = (double)value;
                if (Math.Floor(number) == number && Math.Abs(number) < 9.0e18) return (long)number;
            }
            return null;
        }

        /// <summary>The integral number under <paramref name="key"/> as an int, or null.</summary>
        public static int? GetInt(IDictionary<string, object> map, string key)
        {
            long? value = GetLong(map, key);
            if (value == null || value.Value < int.MinValue || value.Value > int.MaxValue) return null;
            return (int)value.Value;
        }

        /// <summary>The boolean under <paramref name="key"/>, or null.</summary>
        public static bool? GetBool(IDictionary<string, object> map, string key)
        {
            object value = Get(map, key);
            if (value is bool) return (bool)value;
            return null;
        }

        /// <summary>The strings of the array under <paramref name="key"/> (other items are formatted as JSON).</summary>
        public static List<string> GetStrings(IDictionary<string, object> map, string key)
        {
            var result = new List<string>();
            foreach (object item in GetArray(map, key))
            {
                var text = item as string;
                result.Add(text ?? WireJson.Serialize(item));
            }
            return result;
        }
    }
}
