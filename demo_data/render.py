"""Rendering: a score -> notes -> looped MIDI -> 30 s of audio (tinysoundfont, pretty_midi's TimGM6mb.sf2),
with the facts the tags need (instrument, tempo, key); a worker pool that dies with its parent."""
import os
import warnings
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from demo_data.corpus import corpus_dir, stable_int
from file_io import read_json, write_json
from workers import worker_pool

SAMPLE_RATE = 22050
CLIP_SECONDS = 30.0  # like the MSD previews; 30 s -> 1292 frames at hop 512

PACE_BPM = {'lively': (100, 145), 'calm': (50, 85), 'moderate': (65, 125)}
LIVELY = {'reel', 'jig', 'hornpipe', 'fling', 'clog', 'polka', 'march', 'dance', 'ragtime'}
CALM = {'air', 'lullaby', 'sacred', 'mass', 'lament', 'madrigal', 'motet', 'chorale'}
# instrument tag -> General MIDI program (0-based); drawn uniformly per song, independent of source
INSTRUMENTS = {'piano': 0, 'harpsichord': 6, 'organ': 19, 'accordion': 21, 'guitar': 24,
               'violin': 40, 'cello': 42, 'harp': 46, 'strings': 48, 'choir': 52, 'trumpet': 56,
               'clarinet': 71, 'flute': 73}


def soundfont_path():
    import pretty_midi
    return os.path.join(os.path.dirname(pretty_midi.__file__), 'TimGM6mb.sf2')


KEY_PROFILES = {  # Krumhansl & Kessler (1982) probe-tone profiles, tonic first
    'major': np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
    'minor': np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])}
PITCH_NAMES = ['C', 'C#', 'D', 'Eb', 'E', 'F', 'F#', 'G', 'Ab', 'A', 'Bb', 'B']


def estimate_key(notes):
    """(tonic name, 'major'|'minor'): best correlation of the duration-weighted pitch-class
    histogram with the 24 rotated Krumhansl-Kessler profiles (what music21's analyze('key') does)."""
    histogram = np.zeros(12)
    for _, duration, pitch in notes:
        histogram[pitch % 12] += duration
    best = max(((np.corrcoef(histogram, np.roll(profile, tonic))[0, 1], tonic, mode)
                for mode, profile in KEY_PROFILES.items() for tonic in range(12)), key=lambda x: x[0])
    return PITCH_NAMES[best[1]], best[2]


def parse_score(parse):
    from music21 import converter
    from music21.musicxml.xmlObjects import MusicXMLWarning
    if 'abc' in parse:
        return [converter.parse(parse['abc'], format='abc')]
    with warnings.catch_warnings():  # "measure 96 ... is overfull": music21 repairs the corpus score itself
        warnings.simplefilter('ignore', MusicXMLWarning)
        parsed = converter.parse(os.path.join(corpus_dir(), parse.get('file') or parse['abc_file']),
                                 forceSource=True)
    # an ABC file holding one voice per tune (Josquin) is an Opus: its scores sound together
    return list(parsed.scores) if hasattr(parsed, 'scores') and parsed.scores else [parsed]


def score_events(scores):
    """(notes [(start, duration, midi pitch)] in quarter lengths, beat length, marked quarter bpm)."""
    from music21 import meter, tempo
    notes, beat, marked = [], None, None
    for score in scores:
        tied = defaultdict(list)  # midi pitch -> indices of notes whose tie is still open
        # ties merged by hand: music21's stripTies takes seconds on a quartet movement
        for element in score.flatten().notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            start, length = float(element.offset), float(element.quarterLength)
            for note in getattr(element, 'notes', None) or [element]:
                if not hasattr(note, 'pitch'):  # unpitched percussion
                    continue
                tie = note.tie or element.tie  # a chord may carry the tie for all its notes
                tie, midi = tie.type if tie is not None else None, note.pitch.midi
                if tie in ('stop', 'continue') and tied[midi]:
                    held = tied[midi][-1] if tie == 'continue' else tied[midi].pop()
                    notes[held][1] = start + length - notes[held][0]
                else:
                    notes.append([start, length, midi])
                    if tie == 'start':
                        tied[midi].append(len(notes) - 1)
        signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
        if signature is not None and beat is None:
            beat = float(signature.beatDuration.quarterLength)
        mark = next(iter(score.recurse().getElementsByClass(tempo.MetronomeMark)), None)
        if mark is not None and marked is None and mark.number:
            marked = float(mark.getQuarterBPM())
    return sorted(notes), beat or 1.0, marked


def choose_bpm(rng, genres, beat, marked_quarter_bpm):
    """Beats per minute: the score's metronome mark (+-10 %) when plausible, else a draw from the
    range of the piece's style (dance tunes lively, airs, sacred music and madrigals calm)."""
    if marked_quarter_bpm and 40 <= marked_quarter_bpm / beat <= 180:
        return marked_quarter_bpm / beat * rng.uniform(0.9, 1.1)
    pace = 'lively' if genres & LIVELY else 'calm' if genres & CALM else 'moderate'
    return rng.uniform(*PACE_BPM[pace])


def to_midi(notes, seconds_per_quarter, program):
    """pretty_midi object of the notes, looped (1 beat apart) until the clip is full."""
    import pretty_midi
    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=program)
    period = max(start + duration for start, duration, _ in notes) + 1.0
    loop = 0
    while loop * period * seconds_per_quarter < CLIP_SECONDS:
        for start, duration, pitch in notes:
            onset = (loop * period + start) * seconds_per_quarter
            if onset < CLIP_SECONDS and 0 <= pitch < 128:
                instrument.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=onset,
                                                         end=onset + duration * seconds_per_quarter))
        loop += 1
    midi.instruments.append(instrument)
    return midi


_SOUNDFONT = {}


def synthesize(midi):
    """Mono float32 audio of CLIP_SECONDS at SAMPLE_RATE; peak-normalised to 0.9."""
    import tinysoundfont
    if 'bytes' not in _SOUNDFONT:  # read once per worker process
        with open(soundfont_path(), 'rb') as f:
            _SOUNDFONT['bytes'] = f.read()
    # a fresh synthesizer per song (10 ms): a reused one leaks the previous song's release tails
    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(_SOUNDFONT['bytes'])
    instrument = midi.instruments[0]
    synth.program_select(0, sfid, 0, instrument.program)
    events = sorted([(n.start, 1, n.pitch) for n in instrument.notes] + [(n.end, 0, n.pitch) for n in instrument.notes])
    total = int(CLIP_SECONDS * SAMPLE_RATE)
    chunks, position = [], 0
    for time_s, is_on, pitch in events + [(CLIP_SECONDS, -1, 0)]:
        sample = min(total, int(round(time_s * SAMPLE_RATE)))
        if sample > position:
            chunks.append(np.frombuffer(synth.generate(sample - position), dtype=np.float32).copy())
            position = sample
        if is_on == 1:
            synth.noteon(0, pitch, 90)
        elif is_on == 0:
            synth.noteoff(0, pitch)
    audio = np.concatenate(chunks).reshape(-1, 2).mean(axis=1)
    return (0.9 * audio / max(np.abs(audio).max(), 1e-6)).astype(np.float32)


def render_work(job):
    """Worker: one work -> FLAC file + render facts (instrument, tempo, key). Returns (id, info|error)."""
    work, seed, audio_dir, info_dir = job
    import soundfile
    track_id = work['track_id']
    try:
        rng = np.random.default_rng(stable_int('render', seed, work['work_id']))
        instrument = sorted(INSTRUMENTS)[rng.integers(len(INSTRUMENTS))]
        notes, beat, marked = score_events(parse_score(work['parse']))
        if len(notes) < 8:
            raise ValueError(f'only {len(notes)} notes')
        genres = {tag for category, _, tag in work['tags'] if category == 'genre'}
        bpm = choose_bpm(rng, genres, beat, marked)
        tonic, mode = estimate_key(notes)
        midi = to_midi(notes, 60.0 / (bpm * beat), INSTRUMENTS[instrument])
        audio = synthesize(midi)
        folder = os.path.join(audio_dir, track_id[2])
        os.makedirs(folder, exist_ok=True)
        partial = os.path.join(folder, f'.{track_id}.partial.flac')  # hidden: step 0 skips dot files
        soundfile.write(partial, audio, SAMPLE_RATE, subtype='PCM_16')
        os.replace(partial, audio_path(audio_dir, track_id))
        info = {'instrument': instrument, 'program': INSTRUMENTS[instrument], 'bpm': round(float(bpm), 1),
                'beat_quarters': beat, 'key': f'{tonic} {mode}', 'mode': mode,
                'score_notes': len(notes), 'score_quarters': round(max(s + d for s, d, _ in notes), 2)}
    except Exception as error:  # a score music21 cannot read: the song is left out, and reported
        info = {'error': f'{type(error).__name__}: {error}'[:300]}
    write_json(os.path.join(info_dir, track_id + '.json'), info)
    return track_id, info


def audio_path(audio_dir, track_id):
    return os.path.join(audio_dir, track_id[2], track_id + '.flac')


def render_all(works, seed, audio_dir, info_dir, workers, audio_wanted=False):
    """Render the works not rendered yet (resumable: one facts file per song); returns every song's facts.
    audio_wanted: also render again the songs whose audio was deleted after step 0 (the rendering is seeded, so
    the audio and the facts come out the same)."""
    os.makedirs(info_dir, exist_ok=True)

    def needed(track_id):
        facts = os.path.join(info_dir, track_id + '.json')
        if not os.path.exists(facts):
            return True
        return audio_wanted and not os.path.exists(audio_path(audio_dir, track_id)) and \
            'error' not in read_json(facts, 'render facts of a song', 'delete it and rerun')

    todo = [(w, seed, audio_dir, info_dir) for w in works if needed(w['track_id'])]
    with tqdm(total=len(works), initial=len(works) - len(todo), desc='render audio', unit='song') as progress:
        if workers > 1 and len(todo) > 1:
            with worker_pool(workers) as pool:
                for _ in pool.imap_unordered(render_work, todo, chunksize=4):
                    progress.update()
        else:
            for job in todo:
                render_work(job)
                progress.update()
    return render_facts(works, info_dir)


def render_facts(works, info_dir):
    """{track id: facts of its rendering, or {'error': why it could not be rendered}}."""
    return {w['track_id']: read_json(os.path.join(info_dir, w['track_id'] + '.json'), 'render facts of a song',
                                     'delete that file and rerun the same command to render the song again')
            for w in works}
