package packager

import (
	"fmt"
	"time"
)

// Config configures the packager; it is the "hls" section of the config file.
type Config struct {
	// PartTarget is the target duration of a part (EXT-X-PART-INF).
	PartTarget time.Duration `yaml:"part_target"`
	// SegmentDuration is the minimum duration of a segment: a segment ends
	// at the first video keyframe at or after it.
	SegmentDuration time.Duration `yaml:"segment_duration"`
	// SegmentCount is how many complete segments a media playlist keeps.
	SegmentCount int `yaml:"segment_count"`
	// MaxPartsPerSegment bounds a segment when keyframes are rare: once a
	// segment has this many parts it ends at the next part boundary, even
	// without a keyframe.
	MaxPartsPerSegment int `yaml:"max_parts_per_segment"`
	// EndedRetention is how long the playlists of an ended stream stay
	// served (with EXT-X-ENDLIST) before the stream is forgotten.
	EndedRetention time.Duration `yaml:"ended_retention"`
	// SessionTimeout is how long a viewer (client address and User-Agent)
	// counts as watching after its last playlist request.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// ReaderQueueLen bounds the engine reader queue of each stream; 0
	// takes the engine default.
	ReaderQueueLen int `yaml:"reader_queue_len"`
}

// DefaultConfig returns the packager defaults.
func DefaultConfig() Config {
	return Config{
		PartTarget:         200 * time.Millisecond,
		SegmentDuration:    time.Second,
		SegmentCount:       7,
		MaxPartsPerSegment: 60,
		EndedRetention:     30 * time.Second,
		SessionTimeout:     10 * time.Second,
	}
}

// Validate checks the configuration; errors name the offending key.
func (c Config) Validate() error {
	if c.PartTarget < 20*time.Millisecond || c.PartTarget > 5*time.Second {
		return fmt.Errorf("hls.part_target: %v is outside 20ms..5s", c.PartTarget)
	}
	if c.SegmentDuration < c.PartTarget {
		return fmt.Errorf("hls.segment_duration: %v is shorter than hls.part_target %v", c.SegmentDuration, c.PartTarget)
	}
	if c.SegmentDuration > 60*time.Second {
		return fmt.Errorf("hls.segment_duration: %v is longer than 60s", c.SegmentDuration)
	}
	if c.SegmentCount < 3 {
		return fmt.Errorf("hls.segment_count: %d is below 3 (players need three segments of history)", c.SegmentCount)
	}
	min := int((c.SegmentDuration+c.PartTarget-1)/c.PartTarget) + 1
	if c.MaxPartsPerSegment < min {
		return fmt.Errorf("hls.max_parts_per_segment: %d is below %d (segment_duration / part_target + 1)", c.MaxPartsPerSegment, min)
	}
	if c.MaxPartsPerSegment > maxPartIndex+1 {
		return fmt.Errorf("hls.max_parts_per_segment: %d is above %d", c.MaxPartsPerSegment, maxPartIndex+1)
	}
	if c.EndedRetention < 0 {
		return fmt.Errorf("hls.ended_retention: %v is negative", c.EndedRetention)
	}
	if c.SessionTimeout <= 0 {
		return fmt.Errorf("hls.session_timeout: must be positive")
	}
	if c.ReaderQueueLen < 0 {
		return fmt.Errorf("hls.reader_queue_len: %d is negative", c.ReaderQueueLen)
	}
	return nil
}
