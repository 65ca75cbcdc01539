package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/liveengine/liveengine/engine"
)

// envPrefix prefixes every environment override: LIVEENGINE_RTMP_ADDR
// overrides rtmp.addr.
const envPrefix = "LIVEENGINE"

// LogConfig configures logging.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// PublishConfig configures publish authorization.
type PublishConfig struct {
	Auth string `yaml:"auth"`
}

// HTTPConfig configures the engine's HTTP server (HLS, WHIP, WHEP, metrics).
type HTTPConfig struct {
	Addr string `yaml:"addr"`
	// ShutdownTimeout bounds the graceful drain of HTTP requests.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Pprof serves Go's profiler at /debug/pprof/ (off by default: it
	// exposes internals and costs CPU while profiling).
	Pprof bool `yaml:"pprof"`
}

func defaultConfig() Config {
	c := Config{
		Log:     LogConfig{Level: "info", Format: "text"},
		Publish: PublishConfig{Auth: engine.AuthOpen},
		HTTP:    HTTPConfig{Addr: ":8888", ShutdownTimeout: 5 * time.Second},
		Engine:  engine.DefaultConfig(),
	}
	c.componentDefaults()
	return c
}

// loadConfig reads path (if not empty) over the defaults, then applies
// environment overrides, then validates.
func loadConfig(path string) (Config, error) {
	c := defaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := applyEnv(reflect.ValueOf(&c).Elem(), envPrefix, "", os.LookupEnv); err != nil {
		return c, err
	}
	c.Engine.PublishAuth = c.Publish.Auth
	if err := c.validate(); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Config) validateBase() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	if c.Publish.Auth != engine.AuthOpen && c.Publish.Auth != engine.AuthKeys {
		return fmt.Errorf("publish.auth: %q is neither open nor keys", c.Publish.Auth)
	}
	if c.HTTP.Addr == "" {
		return fmt.Errorf("http.addr: must not be empty")
	}
	if c.Bus.URL != "" && !strings.HasPrefix(c.Bus.URL, "redis://") && !strings.HasPrefix(c.Bus.URL, "rediss://") {
		return fmt.Errorf("bus.url: %q must be empty (in-process) or a redis:// URL", c.Bus.URL)
	}
	return c.Engine.Validate()
}

var durationType = reflect.TypeOf(time.Duration(0))

// applyEnv overrides every leaf field of v that has a yaml tag from the
// environment variable named after its path.
func applyEnv(v reflect.Value, prefix, path string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tagParts := strings.Split(f.Tag.Get("yaml"), ",")
		tag := tagParts[0]
		if tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && len(tagParts) > 1 && tagParts[1] == "inline" {
			if err := applyEnv(v.Field(i), prefix, path, lookup); err != nil {
				return err
			}
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		key := tag
		if path != "" {
			key = path + "." + tag
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && f.Type != durationType {
			if err := applyEnv(fv, prefix, key, lookup); err != nil {
				return err
			}
			continue
		}
		name := prefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
		raw, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setFromString(fv, raw); err != nil {
			return fmt.Errorf("%s (from %s): %w", key, name, err)
		}
	}
	return nil
}

func setFromString(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return err
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set a list of %s from the environment", fv.Type().Elem())
		}
		var parts []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot set %s from the environment", fv.Type())
	}
	return nil
}
