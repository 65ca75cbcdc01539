// Package packager is LiveEngine's LL-HLS packager. It attaches an engine
// reader (kind "hls") to every live stream, cuts the stream's H.264 and audio
// units into fMP4 parts and segments, and serves the playlists and media from
// memory through fasthttp.
//
// # URL layout
//
// Every URL lives under /hls/GROUP/, where GROUP is the public id of the
// source stream. A transcoder rendition "GROUP/720p" is served as rendition
// "720p"; what the publisher sent is rendition "source".
//
//	/hls/GROUP/index.m3u8                  multivariant playlist of every live rendition
//	/hls/GROUP/RENDITION/stream.m3u8       LL-HLS media playlist (blocking reload: _HLS_msn, _HLS_part)
//	/hls/GROUP/RENDITION/init.mp4          fMP4 initialization segment
//	/hls/GROUP/RENDITION/seg<MSN>.mp4      complete segment with media sequence number MSN
//	/hls/GROUP/RENDITION/part<MSN>.<I>.mp4 part I (from 0) of segment MSN
//
// Part names carry the segment's media sequence number and the part's index
// in it, so the same moment has the same URL in every rendition whose
// keyframes are aligned. The preload hint names the next part of the
// in-progress segment; when the next keyframe closes that segment instead,
// the hinted part is never produced and a request held for it ends with 404.
//
// # Boundaries
//
// Boundaries depend on timestamps only, never on the wall clock: a segment
// ends at the first video keyframe at or after the next multiple of
// hls.segment_duration (an absolute grid on the stream clock, so with a 2 s
// GOP and the 1 s default segments last 2 s) or earlier when the GOP is
// too long for the fixed target duration (below), and parts are cut at the first
// video sample at or after each multiple of hls.part_target counted from the
// segment's start. A segment without keyframes ends after
// hls.max_parts_per_segment parts. Renditions whose keyframes carry the same
// timestamps (the transcoder aligns them) therefore cut identical segments
// and parts, and the packager keeps a segment clock per group: a rendition
// that joins late takes the media sequence number its siblings gave to the
// same time, so the same MSN means the same moment in every rendition.
//
// Audio follows the video's boundaries by timestamp, not by arrival: an
// audio sample that starts at or after a cut waits for the next part (a
// transcoder rendition's audio runs ahead of its pictures, which wait for
// the encoder), and a cut waits, at most until the next video sample, for
// audio that arrives a little behind its video (an RTMP publisher's
// interleaving). So segment N's audio starts at the same sample in every
// rendition of a group, and a player switching renditions meets no hole.
//
// # Target durations
//
// EXT-X-TARGETDURATION and PART-TARGET never change within a playlist (RFC
// 8216 4.4.3.1; players such as Safari fail when they do). The first
// rendition of a group to complete a segment, which spans the stream's
// first GOP, fixes both for the whole group and the publish:
// max(hls.segment_duration, that segment) rounded to whole seconds, and
// max(hls.part_target, its longest part). Playlists are served from then
// on, so the first LL-HLS playlist comes one GOP after the first keyframe.
// Afterwards the segmenter keeps to them: a part ends before a sample that
// would take it past PART-TARGET (only a single frame longer than the part
// target can exceed it), and a GOP too long for the target is split at a
// part boundary so that every EXTINF rounds to at most the target. While
// GOPs are that long, segments end once they reach the target, so a 3 s GOP
// under a 1 s target becomes three 1 s segments. Such a segment starts
// without a keyframe: playlists never carry EXT-X-INDEPENDENT-SEGMENTS, and
// only parts that start with a keyframe are INDEPENDENT=YES, which is what
// hls.js and Safari use to pick where to start; ffmpeg's HLS demuxer skips
// to the next keyframe.
//
// Segments and parts are immutable byte slices once published: a part is a
// sub-slice of its segment's buffer, and responses reference them without
// copying.
package packager
