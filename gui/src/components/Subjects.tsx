// A station's subjects as chips: the first few, then "+ N more", which opens the
// whole list in a scroll box. A station may capture thousands of subjects; the card
// or row holding them stays a few lines tall either way.
import { useState } from 'preact/hooks';
import { num } from '../format';

export function SubjectChips({ subjects, max, station }: { subjects: string[]; max: number; station: string }) {
  const [open, setOpen] = useState(false);
  const more = subjects.length - max;
  const shown = open || more <= 0 ? subjects : subjects.slice(0, max);
  return (
    <div class="subjects" data-testid="subjects">
      <div class={open ? 'subject-list open' : 'subject-list'} tabIndex={open ? 0 : undefined}>
        {shown.map((x, i) => (
          <code key={i} class="chip" title={x}>
            {x}
          </code>
        ))}
      </div>
      {more > 0 && (
        <button
          type="button"
          class="link small"
          aria-expanded={open}
          aria-label={open ? `Show the first ${max} subjects of ${station}` : `Show all ${num(subjects.length)} subjects of ${station}`}
          onClick={() => setOpen(!open)}
        >
          {open ? 'Show fewer' : `+ ${num(more)} more`}
        </button>
      )}
    </div>
  );
}
